"""Branch ops on the scheduler (regenerate, edit, fork, alternatives, switch) on a scripted
engine: what each op does to the path and the tree, the order of its events, what is rebuilt
after the path changes, and the one-line errors for bad arguments."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest

from conftest import wait_until
from townhall.engine.base import GenerationRequest
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError
from townhall.domain.events import (
    BranchCreated,
    BranchSwitched,
    OutcomeDecided,
    SessionEnded,
    SessionStarted,
    TurnFinished,
    TurnStarted,
)
from townhall.domain.personas import Persona
from townhall.debate.prompts import AgentView
from townhall.debate.scheduler import Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import WATCHER, TurnKind, TurnStatus


def persona(name: str, **extra: object) -> Persona:
    return Persona(name=name, title=f"{name} the tester", bio=f"{name} lives in town.", style="plain", **extra)


PEOPLE = [persona("Ann"), persona("Bob"), persona("Cy"), persona("Mo", moderator=True)]
LEANS = {"Ann": 0.9, "Bob": 0.2, "Cy": 0.7}


def spec(**fields: object) -> TownHallSpec:
    values: dict[str, object] = {"motion": "Build a bridge.", "participants": ["Ann", "Bob", "Cy"], "max_turns": 6}
    values.update(fields)
    return TownHallSpec.model_validate(values)


def numbered() -> ScriptedEngine:
    counter = itertools.count(1)
    return ScriptedEngine(lambda r: f"Point {next(counter)} by {r.agent_id}.")


def leaning(agent_id: str | None, prompt: str, choices: Sequence[str]) -> Sequence[float]:
    p = LEANS[agent_id or ""]
    return [p * 0.4, (1 - p) * 0.4]


def probing() -> ScriptedEngine:
    counter = itertools.count(1)

    def script(request: GenerationRequest) -> str:
        if "The clerk's note" in request.prompt:
            return "the ferry is slow"
        return f"Point {next(counter)} by {request.agent_id}."

    return ScriptedEngine(script, probe_script=leaning)


def record(scheduler: Scheduler) -> list[object]:
    events: list[object] = []
    scheduler.subscribe(events.append)
    return events


def names(events: Sequence[object]) -> list[str]:
    return [k for k, _ in itertools.groupby(type(e).__name__ for e in events)]


async def paused_after(scheduler: Scheduler, turns: int) -> asyncio.Task[str]:
    """Start `scheduler` paused, step it `turns` turns, and leave it paused."""
    scheduler.pause()
    task = asyncio.create_task(scheduler.run())
    for n in range(1, turns + 1):
        scheduler.step()
        await wait_until(lambda: len(scheduler.turns) == n and scheduler.status == "paused")
    return task


async def settle(scheduler: Scheduler) -> None:
    await wait_until(lambda: not scheduler.control.branch_ops and scheduler.status == "paused"
                     and scheduler.current_speaker is None)


async def finish(scheduler: Scheduler, task: asyncio.Task[str]) -> str:
    scheduler.resume()
    return await asyncio.wait_for(task, 30)


async def test_regenerate_the_last_turn_keeps_the_original_and_publishes_in_order() -> None:
    engine = numbered()
    scheduler = Scheduler(engine, spec(), PEOPLE)
    task = await paused_after(scheduler, 3)
    original = scheduler.turns[2]
    events = record(scheduler)

    scheduler.regenerate()
    await settle(scheduler)

    assert names(events) == ["BranchCreated", "BranchSwitched", "TurnStarted", "TokenStreamed", "TurnFinished"]
    created, switched = events[0], events[1]
    assert isinstance(created, BranchCreated) and isinstance(switched, BranchSwitched)
    assert (created.branch, created.parent, created.fork, created.reason) == (2, 1, original.parent, "regenerate")
    assert switched.branch == 2 and switched.from_index == 2
    assert [t.node for t in switched.turns] == [t.node for t in scheduler.turns[:2]]
    started = next(e for e in events if isinstance(e, TurnStarted))
    assert (started.index, started.speaker, started.branch, started.parent) == (2, "Cy", 2, original.parent)
    new = scheduler.turns[2]
    assert new.speaker == "Cy" and new.content != original.content and new.status == TurnStatus.COMPLETE
    assert scheduler.tree.alternatives(new) == [original, new]
    assert scheduler.tree.path(1)[2] is original
    assert scheduler.status == "paused"  # the regenerated turn is said; the pause holds

    assert await finish(scheduler, task) == "max_turns"
    # Budget: the six turns of the current path were made in this run; the replaced one is not counted.
    assert [t.speaker for t in scheduler.turns] == ["Ann", "Bob", "Cy", "Ann", "Bob", "Cy"]
    assert len(scheduler.tree.nodes) == 7


async def test_regenerate_an_earlier_turn_goes_on_from_there_and_agents_see_the_new_path() -> None:
    engine = numbered()
    scheduler = Scheduler(engine, spec(), PEOPLE)
    task = await paused_after(scheduler, 4)
    old = list(scheduler.turns)

    scheduler.regenerate(1)
    await settle(scheduler)
    assert [t.node for t in scheduler.turns[:1]] == [old[0].node]
    assert len(scheduler.turns) == 2 and scheduler.turns[1].speaker == "Bob"
    assert scheduler.next_speaker == "Cy"

    await finish(scheduler, task)
    assert [t.speaker for t in scheduler.turns] == ["Ann", "Bob", "Cy", "Ann", "Bob", "Cy"]
    last_prompt = engine.requests[-1].prompt
    assert scheduler.turns[1].content in last_prompt
    assert old[1].content not in last_prompt and old[2].content not in last_prompt


async def test_edit_is_said_at_once_by_the_watcher_and_the_debate_continues_from_it() -> None:
    engine = numbered()
    scheduler = Scheduler(engine, spec(), PEOPLE)
    task = await paused_after(scheduler, 3)
    original = scheduler.turns[1]
    requests = len(engine.requests)
    events = record(scheduler)

    scheduler.edit(1, "  The bridge would cut my commute in half.  ")
    await settle(scheduler)

    assert names(events) == ["BranchCreated", "BranchSwitched", "TurnStarted", "TokenStreamed", "TurnFinished"]
    assert isinstance(events[0], BranchCreated) and events[0].reason == "edit"
    edited = scheduler.turns[-1]
    assert len(scheduler.turns) == 2 and len(engine.requests) == requests  # no model call
    assert (edited.speaker, edited.kind, edited.author, edited.status) == ("Bob", TurnKind.AGENT, WATCHER,
                                                                            TurnStatus.COMPLETE)
    assert edited.content == "The bridge would cut my commute in half."
    finished = [e for e in events if isinstance(e, TurnFinished)]
    assert finished[0].turn is edited
    assert scheduler.tree.alternatives(edited) == [original, edited]

    scheduler.step()
    await wait_until(lambda: len(scheduler.turns) == 3 and scheduler.status == "paused")
    assert scheduler.turns[2].speaker == "Cy"
    assert "The bridge would cut my commute in half." in engine.requests[-1].prompt
    assert original.content not in engine.requests[-1].prompt
    await finish(scheduler, task)


async def test_fork_and_switching_change_only_the_path() -> None:
    scheduler = Scheduler(numbered(), spec(max_turns=5), PEOPLE)
    task = await paused_after(scheduler, 3)
    first_path = list(scheduler.turns)
    events = record(scheduler)

    scheduler.fork(0)
    await settle(scheduler)
    assert names(events) == ["BranchCreated", "BranchSwitched"]
    assert isinstance(events[0], BranchCreated) and (events[0].reason, events[0].fork) == ("fork", first_path[0].node)
    assert isinstance(events[1], BranchSwitched) and events[1].from_index == 1 and events[1].branch == 2
    assert scheduler.turns == first_path[:1] and scheduler.next_speaker == "Bob"

    scheduler.step()
    await wait_until(lambda: len(scheduler.turns) == 2 and scheduler.status == "paused")
    assert scheduler.turns[1].branch == 2

    events.clear()
    scheduler.switch_branch(1)
    await settle(scheduler)
    assert names(events) == ["BranchSwitched"]
    assert isinstance(events[0], BranchSwitched) and events[0].from_index == 1 and events[0].branch == 1
    assert [t.node for t in scheduler.turns] == [t.node for t in first_path]

    events.clear()
    scheduler.switch_branch(1)  # already current: nothing happens
    await settle(scheduler)
    assert events == []
    await finish(scheduler, task)
    # Five turns made on branch 1's path; branch 2 keeps its own turn.
    assert len(scheduler.turns) == 5 and len(scheduler.tree.path(2)) == 2


async def test_alternatives_wrap_around_and_the_branch_follows() -> None:
    scheduler = Scheduler(numbered(), spec(), PEOPLE)
    task = await paused_after(scheduler, 3)
    first = scheduler.turns[1]
    scheduler.regenerate(1)
    scheduler.regenerate(1)  # both draw turn 1 again: three alternatives
    await settle(scheduler)
    alternatives = scheduler.tree.alternatives(first)
    assert len(alternatives) == 3 and scheduler.turns[1] is alternatives[2] and scheduler.tree.current == 3

    events = record(scheduler)
    scheduler.alternative(1, +1)  # past the newest: wraps to the oldest, on branch 1's full path
    await settle(scheduler)
    assert scheduler.turns[1] is first and scheduler.tree.current == 1 and len(scheduler.turns) == 3
    assert names(events) == ["BranchSwitched"] and isinstance(events[0], BranchSwitched)
    assert events[0].from_index == 1
    scheduler.alternative(1, -1)
    scheduler.alternative(1, +1)
    scheduler.alternative(1, +1)  # three queued steps, each from the one before: -1 +1 +1 = second
    await settle(scheduler)
    assert scheduler.turns[1] is alternatives[1] and scheduler.tree.current == 2
    await finish(scheduler, task)


async def test_bad_arguments_are_one_line_errors_at_the_call() -> None:
    scheduler = Scheduler(numbered(), spec(policy="agenda", moderator="Mo", max_turns=8), PEOPLE)
    with pytest.raises(ConfigError, match="no turns yet"):
        scheduler.regenerate()
    task = await paused_after(scheduler, 2)
    assert scheduler.turns[0].scripted
    with pytest.raises(ConfigError, match="scripted agenda line"):
        scheduler.regenerate(0)
    scheduler.interject("What about the ferry?")
    await wait_until(lambda: len(scheduler.turns) == 3)
    with pytest.raises(ConfigError, match="audience line"):
        scheduler.regenerate(2)
    with pytest.raises(ConfigError, match="no turn 7"):
        scheduler.edit(7, "text")
    with pytest.raises(ConfigError, match="needs some text"):
        scheduler.edit(1, "   ")
    with pytest.raises(ConfigError, match=r"branch 4 does not exist \(branches: 1\)"):
        scheduler.switch_branch(4)
    with pytest.raises(ConfigError, match="no alternatives"):
        scheduler.alternative(1, 1)
    assert not scheduler.control.branch_ops

    scheduler.edit(0, "Welcome, all. Tonight: the bridge.")  # a scripted line can be edited
    await settle(scheduler)
    assert scheduler.turns[-1].author == WATCHER and scheduler.turns[-1].kind == TurnKind.MODERATOR
    assert scheduler.turns[-1].phase == "opening"
    scheduler.step()
    await wait_until(lambda: len(scheduler.turns) == 2 and scheduler.status == "paused")
    assert scheduler.turns[1].speaker == "Ann" and scheduler.turns[1].phase == "opening"  # the agenda goes on
    await finish(scheduler, task)


async def test_seeded_regenerate_draws_a_new_seed_and_repeats_across_runs() -> None:
    seeds = []
    for _ in range(2):
        engine = numbered()
        scheduler = Scheduler(engine, spec(seed=7), PEOPLE)
        task = await paused_after(scheduler, 2)
        scheduler.regenerate()
        scheduler.regenerate()
        await settle(scheduler)
        seeds.append([r.sampling.seed for r in engine.requests])
        await finish(scheduler, task)
    assert seeds[0] == seeds[1]
    assert len(set(seeds[0][1:4])) == 3  # turn 1 drawn three times, each with its own seed


async def test_ops_queued_before_the_run_apply_first_and_a_used_budget_then_ends() -> None:
    engine = probing()
    first = Scheduler(engine, spec(max_turns=4, moderator="Mo"), PEOPLE)
    assert await first.run() == "max_turns"
    assert isinstance(first.outcome, OutcomeDecided)
    said = len(first.tree.nodes)

    resumed = Scheduler(engine, spec(max_turns=1, moderator="Mo"), PEOPLE, session_id=first.session_id,
                        tree=first.tree)
    resumed.edit(2, "I changed my mind about the ferry.")
    events = record(resumed)
    assert await resumed.run() == "max_turns"
    assert names(events)[:6] == ["SessionStarted", "BranchCreated", "BranchSwitched", "TurnStarted",
                                 "TokenStreamed", "TurnFinished"]
    assert isinstance(events[0], SessionStarted) and isinstance(events[-1], SessionEnded)
    # The edit was the one turn of this run; the ballot was held again on the new path.
    assert resumed.turns[2].content == "I changed my mind about the ferry."
    assert [t.kind for t in resumed.turns[3:]] == [TurnKind.MODERATOR]  # the announcement
    assert any(isinstance(e, OutcomeDecided) for e in events) and resumed.outcome is not None
    assert len(resumed.tree.nodes) == said + 2 and resumed.tree.current == 2


async def test_a_run_that_only_flips_holds_no_new_ballot() -> None:
    engine = probing()
    first = Scheduler(engine, spec(max_turns=4, moderator="Mo"), PEOPLE)
    assert await first.run() == "max_turns"
    again = Scheduler(engine, spec(max_turns=1, moderator="Mo"), PEOPLE, session_id=first.session_id, tree=first.tree)
    again.regenerate(1)
    assert await again.run() == "max_turns"
    assert again.tree.current == 2 and again.outcome is not None  # a new turn: a new ballot on branch 2

    # Resumed only to flip back (session.plan_branch_op: no turns beyond the op's): no turn is
    # said, so branch 1's recorded ballot stands and none is held.
    flip = Scheduler(engine, spec(moderator="Mo").model_copy(update={"max_turns": 0}), PEOPLE,
                     session_id=first.session_id, tree=again.tree)
    flip.alternative(1, -1)
    events = record(flip)
    assert await flip.run() == "max_turns"
    assert flip.tree.current == 1
    assert not any(isinstance(e, OutcomeDecided) for e in events)


async def test_stances_and_views_follow_the_path() -> None:
    scheduler = Scheduler(probing(), spec(max_turns=9, context_strategy="truncate"), PEOPLE)
    task = await paused_after(scheduler, 4)
    assert set(scheduler.stances) == {"Ann", "Bob", "Cy"}
    scheduler.prompts.views["Ann"] = AgentView("Ann", first=3)
    scheduler.prompts.views["Bob"] = AgentView("Bob", first=1, summary="Ann spoke.", summary_upto=1)
    scheduler.prompts.views["Cy"] = AgentView("Cy", first=2, summary="Ann and Bob spoke.", summary_upto=2)

    scheduler.fork(1)  # the path now differs from turn 2 on
    await settle(scheduler)
    assert set(scheduler.stances) == {"Ann", "Bob"}  # Cy's reading came after turn 2
    assert scheduler.prompts.views["Ann"].first == 0 and scheduler.prompts.views["Ann"].summary is None
    assert scheduler.prompts.views["Bob"].first == 1 and scheduler.prompts.views["Bob"].summary == "Ann spoke."
    assert scheduler.prompts.views["Cy"].first == 2  # it dropped only turns 0 and 1, which are unchanged

    scheduler.switch_branch(1)
    await settle(scheduler)
    assert set(scheduler.stances) == {"Ann", "Bob", "Cy"}
    await finish(scheduler, task)


async def test_an_edit_of_the_closing_line_lets_the_debate_go_on() -> None:
    replies = iter(["I call the question now.", "A first point.", "A second point.", "A third point.",
                    "A fourth point.", "A fifth point."])
    engine = ScriptedEngine(lambda r: next(replies), delay=0.05)
    scheduler = Scheduler(engine, spec(moderator="Mo", policy="round_robin", closing_phrase="call the question",
                                       max_turns=3), PEOPLE)
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: len(scheduler.turns) == 1 and scheduler.current_speaker == "Mo")
    scheduler.edit(0, "Welcome, everyone.")  # queued while the closing line is being said
    assert await asyncio.wait_for(task, 30) == "max_turns"
    assert [t.content for t in scheduler.turns] == ["Welcome, everyone.", "A first point.", "A second point."]
    assert "I call the question now." in [t.content for t in scheduler.tree.path(1)]
