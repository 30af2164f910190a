"""Stance readings, the closing ballot and the minutes on a scripted engine whose probe
answers from the agent id (so a test knows who leans which way)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from conftest import wait_until
from townhall.debate.ballot import clean_reason, completed_rounds, tally, vote_from, write_minutes, MinutesEntry
from townhall.engine.scripted import ScriptedEngine
from townhall.domain.events import MinutesWritten, OutcomeDecided, SessionEnded, StanceMeasured, TurnFinished, Vote
from townhall.domain.personas import Persona
from townhall.debate.openings import FOR as FOR_OPENINGS
from townhall.debate.voting import room_calibrated
from townhall.debate.prompts import BALLOT_CHOICES
from townhall.debate.scheduler import VOTE_CALLED, Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import TurnKind

LEANS = {"Ann": 0.9, "Bob": 0.2, "Cy": 0.7, "Di": 0.1}


def persona(name: str, **extra: object) -> Persona:
    return Persona(name=name, title=f"{name} the tester", bio=f"{name} lives in town.", style="plain", **extra)


PEOPLE = [persona("Ann"), persona("Bob"), persona("Cy"), persona("Di"), persona("Mo", moderator=True)]


def spec(**fields: object) -> TownHallSpec:
    values: dict[str, object] = {"motion": "Build a bridge.", "participants": ["Ann", "Bob", "Cy"], "moderator": "Mo",
                                 "max_turns": 6, "stances": {"Ann": {"side": "for", "concern": "the ferry queue"}}}
    values.update(fields)
    return TownHallSpec.model_validate(values)


def leaning(agent_id: str | None, prompt: str, choices: Sequence[str]) -> Sequence[float]:
    p = LEANS[(agent_id or "").removeprefix("room1/")]
    return [p * 0.4, (1 - p) * 0.4]  # probabilities of the two answers; the rest of the vocabulary takes 0.6


def engine(**extra: object) -> ScriptedEngine:
    counter = itertools.count(1)

    def script(request: object) -> str:
        if "The clerk's note" in getattr(request, "prompt", ""):
            return "the ferry takes an hour each way\nand more"
        return f"Point {next(counter)} by {getattr(request, 'agent_id', '')}."

    return ScriptedEngine(script, probe_script=leaning, **extra)  # type: ignore[arg-type]


def record(scheduler: Scheduler) -> list[object]:
    events: list[object] = []
    scheduler.subscribe(events.append)
    return events


async def test_each_speaker_is_probed_after_its_turn_and_votes_at_the_end() -> None:
    eng = engine()
    scheduler = Scheduler(eng, spec(), PEOPLE, agent_prefix="room1/")
    events = record(scheduler)
    assert await scheduler.run() == "max_turns"
    stances = [e for e in events if isinstance(e, StanceMeasured)]
    during = stances[:-3]
    # After every agent turn (never the moderator's), the speaker, from its own state.
    spoken = [t for t in scheduler.turns if t.kind == TurnKind.AGENT]
    assert [(s.agent, s.turn_index) for s in during] == [(t.speaker, t.index) for t in spoken]
    for s in during:
        before = events.index(s)
        assert isinstance(events[before - 1], TurnFinished) and events[before - 1].turn.index == s.turn_index
    # Each reading is the probe's, calibrated against every speaker's latest reading so far.
    raw: dict[str, float] = {}
    for s in during:
        raw[s.agent] = LEANS[s.agent]
        assert abs(s.p_for - room_calibrated(raw)[s.agent]) < 1e-9 and s.method == "scripted"
    assert [t.speaker for t in spoken] == ["Ann", "Bob", "Cy", "Ann"]
    assert [s.round for s in during] == [0, 0, 1, 1]
    # The closing ballot: everyone on its full view, then the announcement, outcome, minutes, end.
    closing = stances[-3:]
    assert [s.agent for s in closing] == ["Ann", "Bob", "Cy"]
    assert {s.turn_index for s in closing} == {spoken[-1].index}
    outcome = next(e for e in events if isinstance(e, OutcomeDecided))
    assert (outcome.votes_for, outcome.votes_against, outcome.result) == (2, 1, "carried")
    assert outcome.announcement == "The motion carries, 2 to 1."
    assert [v.choice for v in outcome.votes] == ["for", "against", "for"]
    announce = scheduler.turns[-1]
    assert (announce.speaker, announce.kind, announce.content, announce.scripted) == (
        "Mo", TurnKind.MODERATOR, "The motion carries, 2 to 1.", True)
    kinds = [type(e).__name__ for e in events]
    assert kinds[-3:] == ["OutcomeDecided", "MinutesWritten", "SessionEnded"]
    minutes = next(e for e in events if isinstance(e, MinutesWritten)).text
    assert "Motion: Build a bridge." in minutes and "Result: The motion carries, 2 to 1." in minutes
    final = room_calibrated({name: LEANS[name] for name in ("Ann", "Bob", "Cy")})
    assert all(abs(s.p_for - final[s.agent]) < 1e-9 for s in closing)
    assert (f"- Ann (Ann the tester) came in for the motion and voted for (P(for) {final['Ann']:.2f}), "
            "because the ferry takes an hour each way.") in minutes
    assert f"- Bob (Bob the tester) voted against (P(for) {final['Bob']:.2f})" in minutes
    assert scheduler.outcome == outcome and scheduler.minutes == minutes
    # The probes asked the engine under the agents' ids, with the ballot's two answers.
    assert {agent for agent, _, _ in eng.probes} == {"room1/Ann", "room1/Bob", "room1/Cy"}
    assert all(choices == BALLOT_CHOICES for _, _, choices in eng.probes)
    last_prompt = eng.probes[-1][1]
    # Cy's closing probe sees the whole debate, to its last line, then the vote.
    assert last_prompt.endswith("Point 6 by room1/Ann.\n\nThe vote:\n- Cy, Cy the tester:")
    assert last_prompt.rsplit("\nAnn: ", 1)[1].startswith(FOR_OPENINGS)  # Ann's turn began in her side


async def test_a_tie_does_not_carry_and_no_moderator_means_no_announcement() -> None:
    scheduler = Scheduler(engine(), spec(participants=["Ann", "Bob"], moderator=None, max_turns=2,
                                         stances={}), PEOPLE)
    events = record(scheduler)
    await scheduler.run()
    outcome = next(e for e in events if isinstance(e, OutcomeDecided))
    assert (outcome.result, outcome.votes_for, outcome.votes_against) == ("tied", 1, 1)
    assert outcome.announcement == "The vote is tied, 1 to 1, so the motion does not carry."
    assert [t.speaker for t in scheduler.turns] == ["Ann", "Bob"]


async def test_ballot_off_or_an_engine_without_a_probe_just_stops() -> None:
    for eng, s in ((engine(), spec(ballot=False)), (ScriptedEngine(["Some words here."]), spec())):
        scheduler = Scheduler(eng, s, PEOPLE)
        events = record(scheduler)
        assert await scheduler.run() == "max_turns"
        assert not [e for e in events if isinstance(e, (StanceMeasured, OutcomeDecided, MinutesWritten))]
        assert len(scheduler.turns) == 6


async def test_stop_ends_without_a_ballot() -> None:
    scheduler = Scheduler(engine(delay=0.01), spec(max_turns=None), PEOPLE)
    events = record(scheduler)
    task = asyncio.ensure_future(scheduler.run())
    await wait_until(lambda: len(scheduler.turns) >= 2)
    scheduler.stop()
    assert await task == "stopped"
    assert not [e for e in events if isinstance(e, OutcomeDecided)]


async def test_call_vote_ends_after_the_current_turn_even_while_paused() -> None:
    scheduler = Scheduler(engine(delay=0.01), spec(max_turns=None), PEOPLE)
    events = record(scheduler)
    task = asyncio.ensure_future(scheduler.run())
    await wait_until(lambda: len(scheduler.turns) >= 3)
    scheduler.pause()
    await wait_until(lambda: scheduler.status == "paused")
    scheduler.call_vote()
    assert await task == VOTE_CALLED
    ended = next(e for e in events if isinstance(e, SessionEnded))
    assert ended.reason == VOTE_CALLED
    assert next(e for e in events if isinstance(e, OutcomeDecided)).result == "carried"


def test_tally_rules_and_minutes_text() -> None:
    votes = [vote_from("A", 0.51), vote_from("B", 0.5), vote_from("C", 0.2)]
    assert [v.choice for v in votes] == ["for", "against", "against"]
    counted = tally(votes)
    assert (counted.result, counted.announcement) == ("defeated", "The motion is defeated, 2 to 1.")
    assert tally([]).result == "tied"
    assert completed_rounds({"A": 3, "B": 2}, ["A", "B", "C"]) == 0
    assert completed_rounds({"A": 3, "B": 2, "C": 2}, ["A", "B", "C"]) == 2
    assert clean_reason('"It is cheap. And more" said she') == "It is cheap"
    assert clean_reason("x" * 500).endswith("…") and len(clean_reason("x " * 300)) <= 202
    assert clean_reason("   ") == ""
    text = write_minutes(None, "Do  it", counted, [MinutesEntry("A", "", "undecided", Vote("A", "for", 0.51), "")])
    assert text.splitlines()[:4] == ["Minutes of the town hall meeting", "Motion: Do it",
                                     "Result: The motion is defeated, 2 to 1.", "Votes: 1 for, 2 against."]
    assert text.splitlines()[-1] == "- A came in undecided and voted for (P(for) 0.51)."
