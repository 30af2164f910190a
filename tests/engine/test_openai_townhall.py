"""Whole town halls through a real server: the real Scheduler on the openai engine,
its greedy transcript against the local engine's, and a server that dies mid-turn
followed by a resume on a fresh one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import LlamaCppServer

from townhall.engine.base import SamplingOverrides
from townhall.engine.openai import OpenAIEngine
from townhall.domain.events import Event, SessionEnded, SessionStarted, TokenStreamed, TurnFailed, TurnFinished
from townhall.domain.personas import Persona
from townhall.debate.scheduler import Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import TurnStatus

pytestmark = [pytest.mark.server, pytest.mark.model]

N_CTX = 1024
# The ban and min_tokens act on token ids, which a server never exposes: off, so both sides decode alike.
GREEDY = SamplingOverrides(temperature=0.0, repeat_penalty=1.0, max_tokens=20, no_repeat_ngram_size=0, min_tokens=0)


def personas() -> list[Persona]:
    make = lambda name, title, bio: Persona(  # noqa: E731
        name=name, title=title, bio=bio, style="Plain and brief.", sampling=GREEDY
    )
    return [
        make("Ada", "retired bus driver", "Ada drove the night bus for thirty years."),
        make("Ben", "shop owner", "Ben runs the hardware store on Main Street."),
        make("Cleo", "night nurse", "Cleo cycles to the hospital before dawn."),
    ]


def spec(max_turns: int) -> TownHallSpec:
    return TownHallSpec(
        motion="The town should keep the night bus routes.",
        participants=["Ada", "Ben", "Cleo"],
        policy="round_robin",
        max_turns=max_turns,
        seed=42,
        closing_phrase=None,
        n_ctx=N_CTX,
        sampling=GREEDY,
    )


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[LlamaCppServer]:
    with LlamaCppServer(model_path, n_ctx=N_CTX, threads=2) as running:
        yield running


async def run_town_hall(engine, max_turns: int) -> tuple[str, list[Event], Scheduler]:  # type: ignore[no-untyped-def]
    events: list[Event] = []
    scheduler = Scheduler(engine, spec(max_turns), personas())
    scheduler.subscribe(events.append)
    reason = await scheduler.run()
    return reason, events, scheduler


async def test_town_hall_through_the_server_matches_the_local_engine(server: LlamaCppServer, model_path: Path) -> None:
    from townhall.engine.local import LocalEngine

    remote = OpenAIEngine(server.base_url, n_ctx=N_CTX)
    try:
        reason, events, served = await run_town_hall(remote, 4)
    finally:
        await remote.aclose()
    assert reason == "max_turns"
    started = next(e for e in events if isinstance(e, SessionStarted))
    assert started.engine.backend == "openai" and started.engine.device == f"server · {server.root}"
    finished = [e.turn for e in events if isinstance(e, TurnFinished)]
    assert [t.speaker for t in finished] == ["Ada", "Ben", "Cleo", "Ada"]
    assert all(t.stats is not None and t.stats.generated_tokens > 0 for t in finished)
    assert any(t.status == TurnStatus.COMPLETE and t.content for t in finished)
    assert sum(isinstance(e, TokenStreamed) for e in events) >= 4

    local = LocalEngine(model_path, n_ctx=N_CTX, threads=2)
    try:
        reason_local, _, here = await run_town_hall(local, 4)
    finally:
        await local.aclose()
    assert reason_local == reason
    assert [(t.speaker, t.status, t.content) for t in served.turns] == [
        (t.speaker, t.status, t.content) for t in here.turns
    ]


async def test_server_dies_mid_turn_then_the_session_resumes_on_a_new_one(model_path: Path) -> None:
    events: list[Event] = []
    with LlamaCppServer(model_path, n_ctx=512, threads=2) as doomed:
        engine = OpenAIEngine(doomed.base_url, n_ctx=512, backoff_s=0.05)
        scheduler = Scheduler(engine, spec(4).model_copy(update={"n_ctx": 512}), personas())

        def watch(event: Event) -> None:
            events.append(event)
            if isinstance(event, TokenStreamed) and event.index == 1:
                doomed.kill()  # the second speaker is mid-turn

        scheduler.subscribe(watch)
        try:
            reason = await scheduler.run()
        finally:
            await engine.aclose()
    assert reason == "error"
    failed = [e for e in events if isinstance(e, TurnFailed)]
    assert len(failed) == 1 and failed[0].turn.index == 1 and failed[0].turn.status == TurnStatus.FAILED
    assert "connection" in failed[0].error and "\n" not in failed[0].error
    ended = events[-1]
    assert isinstance(ended, SessionEnded) and ended.reason == "error" and ended.error
    first = scheduler.turns[0]
    assert first.status == TurnStatus.COMPLETE and first.content  # what was said stays said
    assert [e.text for e in events if isinstance(e, TokenStreamed) and e.index == 1]

    history = [t for t in scheduler.turns if t.status != TurnStatus.FAILED]
    with LlamaCppServer(model_path, n_ctx=512, threads=2) as fresh:
        engine = OpenAIEngine(fresh.base_url, n_ctx=512)
        resumed = Scheduler(engine, spec(2).model_copy(update={"n_ctx": 512}), personas(),
                            session_id=scheduler.session_id, history=history)
        try:
            reason = await resumed.run()
        finally:
            await engine.aclose()
    assert reason == "max_turns"
    assert resumed.turns[0] is history[0] and len(resumed.turns) == len(history) + 2
    assert all(t.status in (TurnStatus.COMPLETE, TurnStatus.DEGENERATE) for t in resumed.turns[len(history):])
