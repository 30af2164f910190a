"""Branch ops on the real embedded model: what regenerate and edit cost the engine, and that
going back to an earlier alternative gives back what that path said.

The costs are token counts from the engine's stats (prefill = tokens evaluated before the
first pick), never times, so they hold on a busy machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import wait_until
from townhall.engine.base import Generation, GenerationRequest
from townhall.engine.local import LocalEngine
from townhall.domain.personas import Persona
from townhall.debate.scheduler import Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnStatus

pytestmark = pytest.mark.model

HANDFUL = 4  # tokens: a regenerated turn evaluates no more than this (the target is 0)


def people() -> list[Persona]:
    return [
        Persona(name="Ada", title="civil engineer", bio="Ada built the old dam.", style="Precise."),
        Persona(name="Bram", title="baker", bio="Bram runs the bakery on Main Street.", style="Warm."),
        Persona(name="Cleo", title="student", bio="Cleo cycles to school.", style="Quick."),
    ]


def spec(**sampling: object) -> TownHallSpec:
    return TownHallSpec.model_validate({
        "motion": "The town should build a new bridge.", "participants": ["Ada", "Bram", "Cleo"], "max_turns": 40,
        "seed": 5, "sampling": {"max_tokens": 16, **sampling},
        "stances": {"Ada": {"side": "for", "concern": "traffic"}, "Bram": {"side": "against", "concern": "the cost"}},
    })


def recording(engine: LocalEngine) -> list[GenerationRequest]:
    """Every request the engine is sent, in order (a wrapper on this instance only)."""
    sent: list[GenerationRequest] = []
    generate = engine.generate

    def wrapper(request: GenerationRequest) -> Generation:
        sent.append(request)
        return generate(request)

    engine.generate = wrapper  # type: ignore[method-assign]
    return sent


async def step_to(scheduler: Scheduler, turns: int) -> None:
    while len(scheduler.turns) < turns:
        n = len(scheduler.turns)
        scheduler.step()
        await wait_until(lambda: len(scheduler.turns) == n + 1 and scheduler.status == "paused", timeout=300)


async def apply(scheduler: Scheduler) -> None:
    await wait_until(lambda: not scheduler.control.branch_ops and scheduler.status == "paused"
                     and scheduler.current_speaker is None, timeout=300)


async def regenerate_last(scheduler: Scheduler) -> tuple[Turn, Turn]:
    original = scheduler.turns[-1]
    scheduler.regenerate()
    await apply(scheduler)
    return original, scheduler.turns[-1]


async def test_regenerating_the_last_turn_costs_no_prefill_however_long_the_debate(model_path: Path) -> None:
    engine = LocalEngine(model_path, n_ctx=2048)
    scheduler = Scheduler(engine, spec(), people())  # sampled (temperature 0.7), probes after every turn
    scheduler.pause()
    task = asyncio.create_task(scheduler.run())
    try:
        costs = []
        for turns in (4, 12):
            await step_to(scheduler, turns)
            original, new = await regenerate_last(scheduler)
            assert new.speaker == original.speaker and new.node != original.node and new.index == original.index
            assert new.status in (TurnStatus.COMPLETE, TurnStatus.DEGENERATE) and new.stats is not None
            assert new.content != original.content  # a new seed draws a new turn
            assert scheduler.tree.alternatives(new) == [original, new]
            assert scheduler.tree.path(original.branch)[-1] is original  # the original is kept
            costs.append(new.stats.prefill_tokens)
            assert new.stats.reused_tokens == new.stats.prompt_tokens - new.stats.prefill_tokens
        assert all(cost <= HANDFUL for cost in costs), costs
        assert abs(costs[0] - costs[1]) <= 2, costs
        assert scheduler.probe_cost.probes >= 14  # the probes ran in between and wrote no state
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, 300)
        await engine.aclose()


async def test_after_the_closing_ballot_a_resumed_run_regenerates_from_the_checkpoint(model_path: Path) -> None:
    engine = LocalEngine(model_path, n_ctx=2048)
    try:
        first = Scheduler(engine, spec().model_copy(update={"max_turns": 4}), people())
        assert await first.run() == "max_turns"
        assert first.ballot_cost.probes == 3  # every agent probed on its full view: the speaker is displaced
        last = first.turns[-1]
        resumed = Scheduler(engine, spec().model_copy(update={"max_turns": 1}), people(),
                            session_id=first.session_id, tree=first.tree)
        resumed.regenerate()
        assert await resumed.run() == "max_turns"
        new = resumed.turns[-1]
        assert new.index == last.index and new.speaker == last.speaker and new.branch == 2
        assert new.stats is not None and new.stats.prefill_tokens <= HANDFUL and new.stats.restore_ms > 0
    finally:
        await engine.aclose()


async def test_after_an_edit_each_agent_evaluates_only_from_the_edit_on(model_path: Path) -> None:
    engine = LocalEngine(model_path, n_ctx=2048)
    sent = recording(engine)
    scheduler = Scheduler(engine, spec(), people())
    scheduler.pause()
    task = asyncio.create_task(scheduler.run())
    try:
        await step_to(scheduler, 9)
        edited = "The river floods every spring and the ferry stops for a week."
        scheduler.edit(4, edited)
        await apply(scheduler)
        assert len(scheduler.turns) == 5 and scheduler.turns[4].content == edited
        before = len(sent)
        await step_to(scheduler, 8)  # the next turn of each agent, on the edited path
        for request, turn in zip(sent[before:], scheduler.turns[5:], strict=True):
            assert turn.stats is not None
            cut = request.prompt.index(edited)
            from_edit = len(engine.tokenize(request.prompt)) - len(engine.tokenize(request.prompt[:cut]))
            assert turn.stats.prefill_tokens <= from_edit + HANDFUL, (turn.speaker, turn.stats, from_edit)
            assert turn.stats.prefill_tokens < turn.stats.prompt_tokens / 2
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, 300)
        await engine.aclose()


async def test_back_on_the_original_alternative_a_greedy_debate_says_what_it_said(model_path: Path) -> None:
    """Greedy turns; one engine goes straight to turn 5, the other edits turn 2, says two turns
    on the edited branch, steps back to the original turn 2 and says turn 5 from there."""
    greedy = spec(temperature=0.0)
    engine = LocalEngine(model_path, n_ctx=2048)
    try:
        straight = Scheduler(engine, greedy.model_copy(update={"max_turns": 6, "ballot": False}), people())
        await straight.run()
        expected = [(t.speaker, t.content) for t in straight.turns]
    finally:
        await engine.aclose()

    engine = LocalEngine(model_path, n_ctx=2048)
    scheduler = Scheduler(engine, greedy.model_copy(update={"ballot": False}), people())
    scheduler.pause()
    task = asyncio.create_task(scheduler.run())
    try:
        await step_to(scheduler, 5)
        assert [(t.speaker, t.content) for t in scheduler.turns] == expected[:5]
        scheduler.edit(2, "Cleo: no, wait. The bridge should carry buses first.")
        await apply(scheduler)
        await step_to(scheduler, 5)  # turns 3 and 4 on the edited branch: every state moves on
        assert scheduler.tree.current == 2
        scheduler.alternative(2, -1)
        await apply(scheduler)
        assert scheduler.tree.current == 1 and [(t.speaker, t.content) for t in scheduler.turns] == expected[:5]
        await step_to(scheduler, 6)
        last = scheduler.turns[5]
        assert last.stats is not None and last.stats.reused_tokens > 0  # rolled back, not rebuilt
        assert (last.speaker, last.content) == expected[5]
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, 300)
        await engine.aclose()
