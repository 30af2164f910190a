"""The scheduler on a scripted engine: order of events, control while running, stop conditions."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from conftest import wait_until
from townhall.engine.base import GenerationRequest
from townhall.engine.scripted import ScriptedEngine
from townhall.domain.events import (
    Paused,
    Resumed,
    SessionEnded,
    SessionStarted,
    TokenStreamed,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from townhall.domain.personas import Persona
from townhall.debate.scheduler import MAX_RESAMPLES, Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnKind, TurnStatus


def persona(name: str, **extra: object) -> Persona:
    return Persona(name=name, title=f"{name} the tester", bio=f"{name} lives in town.", style="plain", **extra)


PEOPLE = [persona("Ann"), persona("Bob"), persona("Cy"), persona("Mo", moderator=True)]


def spec(**fields: object) -> TownHallSpec:
    values: dict[str, object] = {"motion": "Build a bridge.", "participants": ["Ann", "Bob", "Cy"], "max_turns": 6}
    values.update(fields)
    return TownHallSpec.model_validate(values)


def numbered(delay: float = 0.0) -> ScriptedEngine:
    counter = itertools.count(1)
    # Each reply shares no word 3-gram with any other, so none is an echo.
    return ScriptedEngine(lambda r: f"Point {next(counter)} by {r.agent_id}.", delay=delay)


def record(scheduler: Scheduler) -> list[object]:
    events: list[object] = []
    scheduler.subscribe(events.append)
    return events


async def test_round_robin_publishes_events_in_order() -> None:
    engine = numbered()
    scheduler = Scheduler(engine, spec(), PEOPLE)
    events = record(scheduler)
    assert scheduler.status == "idle"
    reason = await scheduler.run()

    assert reason == "max_turns" and scheduler.status == "finished"
    assert [t.speaker for t in scheduler.turns] == ["Ann", "Bob", "Cy", "Ann", "Bob", "Cy"]
    assert all(t.status == TurnStatus.COMPLETE for t in scheduler.turns)
    assert scheduler.turns[0].content == "Point 1 by Ann."
    assert isinstance(events[0], SessionStarted) and isinstance(events[-1], SessionEnded)
    assert events[-1].reason == "max_turns" and events[-1].turns == 6
    # Per turn: TurnStarted, at least one token, TurnFinished with the engine's stats.
    body = events[1:-1]
    kinds = [type(e).__name__ for e in body]
    collapsed = [k for k, _ in itertools.groupby(kinds)]
    assert collapsed == ["TurnStarted", "TokenStreamed", "TurnFinished"] * 6
    finished = [e for e in body if isinstance(e, TurnFinished)]
    assert [e.turn.index for e in finished] == list(range(6))
    assert all(e.turn.stats is not None and e.turn.stats.generated_tokens > 0 for e in finished)
    streamed = "".join(e.text for e in body if isinstance(e, TokenStreamed) and e.index == 0)
    assert streamed.strip() == finished[0].turn.content


async def test_prompts_are_append_only_per_agent_with_stops_for_everyone_else() -> None:
    engine = numbered()
    await Scheduler(engine, spec(), PEOPLE).run()
    ann = [r for r in engine.requests if r.agent_id == "Ann"]
    assert len(ann) == 2
    first, second = ann[0].prompt, ann[1].prompt
    assert first.endswith("\nAnn:") and "Motion: Build a bridge." in first
    assert "About Ann: Ann lives in town." in first
    assert second.startswith(first), "the second prompt must extend the first"
    assert second.endswith("Ann: Point 1 by Ann.\nBob: Point 2 by Bob.\nCy: Point 3 by Cy.\nAnn:")
    stops = ann[0].sampling.stop
    assert "\nBob:" in stops and "\nCy:" in stops and "\nAudience:" in stops and "\nAnn:" not in stops


async def test_agent_never_speaks_as_another_participant() -> None:
    engine = ScriptedEngine(["I agree with the plan.\nBob: No you don't!", "Fine by me.\nMayor Lee: order!"])
    scheduler = Scheduler(engine, spec(max_turns=2), PEOPLE)
    await scheduler.run()
    assert [t.content for t in scheduler.turns] == ["I agree with the plan.", "Fine by me."]


async def test_interjection_becomes_the_next_turn_and_everyone_sees_it() -> None:
    counter = itertools.count(1)
    engine = ScriptedEngine(lambda r: f"{r.agent_id} speaks {next(counter)} times.", delay=0.001)
    scheduler = Scheduler(engine, spec(max_turns=3), PEOPLE)
    events = record(scheduler)

    def on_event(event: object) -> None:
        if isinstance(event, TurnFinished) and event.turn.index == 0:
            scheduler.interject("What about parking?", speaker="Dana")

    scheduler.subscribe(on_event)
    await scheduler.run()
    audience = scheduler.turns[1]
    assert (audience.speaker, audience.kind, audience.status) == ("Dana", TurnKind.AUDIENCE, TurnStatus.COMPLETE)
    assert audience.content == "What about parking?"
    started = [e for e in events if isinstance(e, TurnStarted)]
    assert [(e.index, e.speaker) for e in started][:3] == [(0, "Ann"), (1, "Dana"), (2, "Bob")]
    # Audience turns do not count toward max_turns; every later prompt carries the line.
    assert [t.speaker for t in scheduler.turns] == ["Ann", "Dana", "Bob", "Cy"]
    for request in engine.requests[1:]:
        assert "Dana: What about parking?\n" in request.prompt
        assert "\nDana:" in request.sampling.stop


async def test_pause_step_resume() -> None:
    engine = numbered(delay=0.01)
    scheduler = Scheduler(engine, spec(max_turns=8), PEOPLE)
    events = record(scheduler)
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: len(scheduler.turns) >= 1)
    scheduler.pause()
    await wait_until(lambda: scheduler.status == "paused")
    settled = len(scheduler.turns)
    assert all(t.status != TurnStatus.STREAMING for t in scheduler.turns)
    await asyncio.sleep(0.1)
    assert len(scheduler.turns) == settled, "no turn may start while paused"
    assert scheduler.next_speaker == ["Ann", "Bob", "Cy"][settled % 3]

    scheduler.step()
    await wait_until(lambda: len(scheduler.turns) == settled + 1 and scheduler.status == "paused")
    await asyncio.sleep(0.1)
    assert len(scheduler.turns) == settled + 1, "step runs exactly one turn"
    assert scheduler.turns[-1].status == TurnStatus.COMPLETE

    scheduler.resume()
    assert await asyncio.wait_for(task, 10) == "max_turns"
    names = [type(e).__name__ for e in events]
    assert names.count("Paused") == 1 and names.count("Resumed") == 1
    assert names.index("Paused") < names.index("Resumed")
    paused_at = names.index("Paused")
    assert names[paused_at - 1] == "TurnFinished", "Paused comes only once the turn has settled"


async def test_step_while_running_pauses_after_the_current_turn() -> None:
    engine = ScriptedEngine(lambda r: "a b c d e f", delay=0.01)
    scheduler = Scheduler(engine, spec(max_turns=5), PEOPLE)
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: scheduler.current_speaker == "Ann")
    scheduler.step()
    await wait_until(lambda: scheduler.status == "paused")
    assert len(scheduler.turns) == 1 and scheduler.turns[0].status == TurnStatus.COMPLETE
    scheduler.stop()
    assert await asyncio.wait_for(task, 10) == "stopped"


async def test_interrupt_keeps_the_text_so_far() -> None:
    long_reply = " ".join(f"word{i}" for i in range(200))
    engine = ScriptedEngine(lambda r: long_reply, delay=0.005)
    scheduler = Scheduler(engine, spec(max_turns=2, sampling={"max_tokens": 400}), PEOPLE)
    events = record(scheduler)
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: sum(isinstance(e, TokenStreamed) for e in events) >= 5)
    scheduler.interrupt()
    await asyncio.wait_for(task, 10)
    first = scheduler.turns[0]
    assert first.status == TurnStatus.INTERRUPTED
    assert first.content.startswith("word0 word1 word2") and len(first.content) < len(long_reply)
    assert first.stats is not None and first.stats.finish_reason == "cancelled"
    # The interrupted words stay in the record the next speaker sees.
    assert f"Ann: {first.content}\n" in engine.requests[1].prompt


async def test_skip_current_drops_the_turn_and_the_debate_goes_on() -> None:
    engine = ScriptedEngine(lambda r: "x " * 100, delay=0.005)
    scheduler = Scheduler(engine, spec(max_turns=2, sampling={"max_tokens": 200}), PEOPLE)
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: scheduler.current_speaker == "Ann" and len(engine.requests) == 1)
    await asyncio.sleep(0.02)
    scheduler.skip()
    assert await asyncio.wait_for(task, 10) == "max_turns"
    skipped = scheduler.turns[0]
    assert skipped.status == TurnStatus.SKIPPED and skipped.content == ""
    assert [t.speaker for t in scheduler.turns] == ["Ann", "Bob", "Cy"], "a skipped turn does not count"
    assert "Ann:" not in engine.requests[1].prompt.split("Transcript of tonight's meeting:\n", 1)[1]


async def test_skip_while_paused_skips_the_next_speaker() -> None:
    engine = numbered(delay=0.002)
    scheduler = Scheduler(engine, spec(max_turns=3), PEOPLE)
    scheduler.pause()
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: scheduler.status == "paused")
    assert scheduler.next_speaker == "Ann"
    scheduler.skip()
    scheduler.resume()
    await asyncio.wait_for(task, 10)
    assert [t.speaker for t in scheduler.turns] == ["Bob", "Cy", "Ann"]


async def test_stop_ends_after_the_turn_settles() -> None:
    engine = ScriptedEngine(lambda r: "a b c d", delay=0.01)
    scheduler = Scheduler(engine, spec(max_turns=50), PEOPLE)
    events = record(scheduler)
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: scheduler.current_speaker is not None)
    scheduler.stop()
    assert await asyncio.wait_for(task, 10) == "stopped"
    assert len(scheduler.turns) == 1 and scheduler.turns[0].status == TurnStatus.COMPLETE
    assert isinstance(events[-1], SessionEnded) and events[-1].reason == "stopped"


async def test_unclean_turn_is_resampled_with_another_seed_then_degenerate() -> None:
    replies = iter(["", "Now I have words.", "...", "!!", "Bob repeats.", "Bob repeats.", "ok"])
    engine = ScriptedEngine(lambda r: next(replies))
    scheduler = Scheduler(engine, spec(max_turns=2, seed=11), PEOPLE)
    await scheduler.run()
    first, second = scheduler.turns
    assert (first.content, first.status, first.retries) == ("Now I have words.", TurnStatus.COMPLETE, 1)
    assert engine.requests[0].sampling.seed != engine.requests[1].sampling.seed
    assert second.status == TurnStatus.DEGENERATE and second.retries == MAX_RESAMPLES
    assert len(engine.requests) == 2 + MAX_RESAMPLES + 1


async def test_verbatim_repeat_is_degenerate_and_kept_out_of_prompts() -> None:
    def script(request: GenerationRequest) -> str:
        return "Cy is new here." if request.agent_id == "Cy" else "Same words here."

    engine = ScriptedEngine(script)
    scheduler = Scheduler(engine, spec(max_turns=3, sampling={"no_repeat_ngram_size": 0}), PEOPLE)
    await scheduler.run()
    assert [t.status for t in scheduler.turns] == [TurnStatus.COMPLETE, TurnStatus.DEGENERATE, TurnStatus.COMPLETE]
    assert "Bob: Same words" not in engine.requests[-1].prompt


async def test_seeded_runs_repeat_their_request_seeds() -> None:
    async def seeds() -> list[int | None]:
        engine = numbered()
        await Scheduler(engine, spec(seed=42, policy="random"), PEOPLE).run()
        return [r.sampling.seed for r in engine.requests] + [hash(tuple(r.agent_id for r in engine.requests))]

    first, second = await seeds(), await seeds()
    assert first == second and len(set(first[:-1])) == len(first) - 1


async def test_resume_from_history_continues_the_indices() -> None:
    history = [
        Turn(0, "Ann", TurnKind.AGENT, "Bridges are good.", TurnStatus.COMPLETE),
        Turn(1, "Bob", TurnKind.AGENT, "Bridges cost money.", TurnStatus.COMPLETE),
    ]
    engine = numbered()
    scheduler = Scheduler(engine, spec(max_turns=2), PEOPLE, session_id="abc123", history=history)
    events = record(scheduler)
    await scheduler.run()
    assert scheduler.session_id == "abc123"
    assert isinstance(events[0], SessionStarted) and events[0].resumed
    assert [(t.index, t.speaker) for t in scheduler.turns[2:]] == [(2, "Cy"), (3, "Ann")]
    assert "Ann: Bridges are good.\nBob: Bridges cost money.\nCy:" in engine.requests[0].prompt


async def test_engine_failure_becomes_a_failed_turn_and_a_clean_end() -> None:
    def script(request: GenerationRequest) -> str:
        raise RuntimeError("backend fell over")

    scheduler = Scheduler(ScriptedEngine(script), spec(), PEOPLE)
    events = record(scheduler)
    assert await scheduler.run() == "error"
    failed = [e for e in events if isinstance(e, TurnFailed)]
    assert len(failed) == 1 and failed[0].turn.status == TurnStatus.FAILED
    assert "backend fell over" in failed[0].error
    assert isinstance(events[-1], SessionEnded) and "backend fell over" in (events[-1].error or "")


async def test_token_budget_and_time_budget() -> None:
    engine = ScriptedEngine(lambda r: "one two three four five")
    scheduler = Scheduler(engine, spec(max_turns=None, token_budget=12), PEOPLE)
    assert await scheduler.run() == "token_budget"
    assert len(scheduler.turns) == 3  # 5 + 5 < 12 <= 15

    now = [1000.0]

    def clock() -> float:
        now[0] += 10.0  # every reading is ten seconds later
        return now[0]

    timed = Scheduler(ScriptedEngine(), spec(max_turns=None, time_budget_s=45), PEOPLE, clock=clock)
    assert await timed.run() == "time_budget"
    assert 0 < len(timed.turns) < 10


async def test_closing_phrase_from_the_moderator_ends_the_session() -> None:
    calls = itertools.count(1)

    def script(request: GenerationRequest) -> str:
        n = next(calls)
        if request.agent_id == "Mo":
            return "Thank you all, this meeting is adjourned." if n > 4 else "Welcome. Ann first."
        return f"{request.agent_id} has view {n}."

    scheduler = Scheduler(ScriptedEngine(script), spec(moderator="Mo", max_turns=40), PEOPLE)
    assert await scheduler.run() == "closing_phrase"
    assert scheduler.turns[-1].speaker == "Mo" and scheduler.turns[0].speaker == "Mo"
    assert [t.speaker for t in scheduler.turns[1:4]] == ["Ann", "Bob", "Cy"]
    assert len(scheduler.turns) == 5
    assert [p.name for p in scheduler.participants] == ["Mo", "Ann", "Bob", "Cy"]


async def test_async_and_broken_subscribers_do_not_stop_the_debate() -> None:
    seen: list[str] = []

    async def slow(event: object) -> None:
        await asyncio.sleep(0)
        seen.append(type(event).__name__)

    def broken(event: object) -> None:
        raise ValueError("view bug")

    scheduler = Scheduler(numbered(), spec(max_turns=2), PEOPLE)
    scheduler.subscribe(broken)
    scheduler.subscribe(slow)
    assert await scheduler.run() == "max_turns"
    assert seen[0] == "SessionStarted" and seen[-1] == "SessionEnded"


def test_unknown_persona_is_a_clear_error() -> None:
    from townhall.errors import ConfigError

    with pytest.raises(ConfigError, match="'Zed'"):
        Scheduler(ScriptedEngine(), spec(participants=["Ann", "Zed"]), PEOPLE)


async def test_paused_and_resumed_are_published_when_started_paused() -> None:
    scheduler = Scheduler(numbered(), spec(max_turns=1), PEOPLE)
    events = record(scheduler)
    scheduler.pause()
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: any(isinstance(e, Paused) for e in events))
    scheduler.interject("Hello?")
    await wait_until(lambda: len(scheduler.turns) == 1)
    assert scheduler.turns[0].kind == TurnKind.AUDIENCE and scheduler.status == "paused"
    scheduler.resume()
    await asyncio.wait_for(task, 10)
    assert any(isinstance(e, Resumed) for e in events)
    assert scheduler.turns[-1].speaker == "Ann"
