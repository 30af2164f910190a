"""Context strategies: a debate longer than the context never crashes (seed 000's bug)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest
from townhall.engine.scripted import ScriptedEngine
from townhall.domain.events import SessionEnded, StrategyApplied
from townhall.domain.personas import Persona, PersonaRegistry
from townhall.debate.scheduler import Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import TurnStatus

N_CTX = 320  # the minutes header, stances and exemplar take about 170 scripted tokens
PEOPLE = [Persona(name=n, title="resident", bio=f"{n} lives here.", style="short") for n in ("Ann", "Bob", "Cy")]


def talkative() -> ScriptedEngine:
    counter = itertools.count(1)

    def script(request: GenerationRequest) -> str:
        if request.agent_id is None:
            return "They argued about the bridge and its cost."
        n = next(counter)
        return f"point {n} about bridge{n} costs item{n} and item{n + 1}"  # never an echo

    return ScriptedEngine(script, n_ctx=N_CTX)


def spec(strategy: str, turns: int = 40) -> TownHallSpec:
    return TownHallSpec(
        motion="Build a bridge.", participants=["Ann", "Bob", "Cy"], max_turns=turns,
        context_strategy=strategy, sampling={"max_tokens": 12},
    )


@pytest.mark.parametrize("strategy", ["truncate", "summarize"])
async def test_long_debate_in_a_small_context_finishes(strategy: str) -> None:
    engine = talkative()
    forgotten: list[str] = []
    original_forget = engine.forget

    def forget(agent_id: str) -> None:
        forgotten.append(agent_id)
        original_forget(agent_id)

    engine.forget = forget  # type: ignore[method-assign]
    scheduler = Scheduler(engine, spec(strategy), PEOPLE)
    events: list[object] = []
    scheduler.subscribe(events.append)
    assert await scheduler.run() == "max_turns"
    assert all(t.status == TurnStatus.COMPLETE for t in scheduler.turns)
    applied = [e for e in events if isinstance(e, StrategyApplied)]
    assert applied and all(e.strategy == strategy for e in applied)
    assert sorted(set(forgotten)) == ["Ann", "Bob", "Cy"] and len(forgotten) == len(applied)
    for request in engine.requests:
        if request.agent_id is not None:
            assert len(request.prompt.split()) + request.sampling.max_tokens <= N_CTX
    # Each rebuild cuts deep enough to serve several turns before the next.
    assert len(applied) < len(scheduler.turns) / 2
    # The header and the persona survive every cut.
    last = [r for r in engine.requests if r.agent_id == "Ann"][-1].prompt
    assert last.startswith("Minutes of a public town hall meeting.\nMotion: Build a bridge.") and "About Ann:" in last
    if strategy == "summarize":
        assert "(Earlier in the meeting: They argued about the bridge and its cost.)" in last
        assert any(r.agent_id is None for r in engine.requests)
    else:
        assert "Earlier in the meeting" not in last


async def test_error_strategy_stops_with_a_clear_message() -> None:
    scheduler = Scheduler(talkative(), spec("error"), PEOPLE)
    events: list[object] = []
    scheduler.subscribe(events.append)
    assert await scheduler.run() == "error"
    end = events[-1]
    assert isinstance(end, SessionEnded) and end.error is not None
    assert f"{N_CTX}-token context" in end.error and "--n-ctx" in end.error and "\n" not in end.error
    assert all(t.status == TurnStatus.COMPLETE for t in scheduler.turns), "nothing said is lost"


async def test_header_that_cannot_fit_is_an_error_not_a_crash() -> None:
    engine = ScriptedEngine(n_ctx=30)
    scheduler = Scheduler(engine, spec("truncate"), PEOPLE)
    events: list[object] = []
    scheduler.subscribe(events.append)
    assert await scheduler.run() == "error"
    assert "raise --n-ctx" in (events[-1].error or "")


@pytest.mark.model
@pytest.mark.parametrize("strategy", ["truncate", "summarize"])
async def test_sixty_turns_at_n_ctx_512_on_the_real_model(model_path: Path, strategy: str) -> None:
    from townhall.engine.local import LocalEngine

    engine = LocalEngine(model_path, n_ctx=512)
    registry = PersonaRegistry.default()
    townhall = TownHallSpec(
        motion="The rail yard should become a skate park.", participants=["Walt", "Stacy"], max_turns=60,
        seed=9, context_strategy=strategy, n_ctx=512, sampling={"max_tokens": 8},
    )
    scheduler = Scheduler(engine, townhall, registry.resolve(townhall.participants))
    events: list[object] = []
    scheduler.subscribe(events.append)
    try:
        reason = await scheduler.run()
    finally:
        await engine.aclose()
    end = events[-1]
    assert reason == "max_turns", getattr(end, "error", None)
    assert len(scheduler.turns) == 60
    assert not any(t.status == TurnStatus.FAILED for t in scheduler.turns)
    assert sum(t.status == TurnStatus.COMPLETE for t in scheduler.turns) >= 30
    applied = [e for e in events if isinstance(e, StrategyApplied)]
    assert applied, "60 turns cannot fit in 512 tokens without the strategy acting"
    assert all(t.stats is None or t.stats.finish_reason != "context" for t in scheduler.turns)
