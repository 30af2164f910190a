"""The agenda policy, stances and resample-then-degenerate, on the scripted engine."""

from __future__ import annotations

import itertools

import pytest

from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError
from townhall.domain.events import TurnStarted
from townhall.domain.personas import Persona
from townhall.debate.openings import AGAINST, AGAINST_REPLY, all_openings, contradicts
from townhall.debate.policies import CLOSING, OPENING, QUESTIONS
from townhall.debate.scheduler import MAX_RESAMPLES, Scheduler
from townhall.domain.spec import TownHallSpec, spec_from_data
from townhall.domain.turns import TurnKind, TurnStatus


def persona(name: str, **extra: object) -> Persona:
    return Persona(name=name, title=f"{name} the tester", bio=f"{name} lives in town.", style="plain", **extra)


PEOPLE = [persona("Ann"), persona("Bob"), persona("Cy"), persona("Dee"), persona("Mo", moderator=True)]
STANCES = {
    "Ann": {"side": "for", "concern": "the school run"},
    "Bob": {"side": "against", "concern": "the cost of upkeep"},
    "Cy": {"side": "undecided", "concern": "noise at night"},
    "Dee": {"side": "against", "concern": "parking for the shop"},
}


def agenda_spec(**fields: object) -> TownHallSpec:
    values: dict[str, object] = {
        "title": "Bridge Hearing",
        "motion": "Build a bridge over the river.",
        "participants": ["Ann", "Bob", "Cy", "Dee"],
        "moderator": "Mo",
        "policy": "agenda",
        "max_turns": 24,
        "stances": STANCES,
    }
    values.update(fields)
    return spec_from_data(values, "test")


def varied() -> ScriptedEngine:
    counter = itertools.count(1)
    words = ["river", "school", "money", "traffic", "night", "shop", "trees", "fish", "bus", "taxes"]
    return ScriptedEngine(
        lambda r: f"{r.agent_id} says point {next(counter)} about the {words[len(r.banned_texts) % len(words)]}."
    )


async def test_agenda_runs_opening_questions_closing_in_order() -> None:
    engine = varied()
    scheduler = Scheduler(engine, agenda_spec(), PEOPLE)
    events: list[object] = []
    scheduler.subscribe(events.append)
    assert await scheduler.run() == "closing_phrase"
    turns = scheduler.turns
    assert len(turns) == 24
    phases = [t.phase for t in turns]
    # Phases never go back: all openings, then questions, then closings.
    order = {OPENING: 0, QUESTIONS: 1, CLOSING: 2}
    assert [order[p] for p in phases] == sorted(order[p] for p in phases)
    opening = [t.speaker for t in turns if t.phase == OPENING]
    assert opening == ["Mo", "Ann", "Bob", "Cy", "Dee"]  # each participant once, in order
    closing = [t.speaker for t in turns if t.phase == CLOSING]
    assert closing == ["Mo", "Ann", "Bob", "Cy", "Dee", "Mo"]
    assert "adjourned" in turns[-1].content
    # The moderator's lines are written from the agenda, never asked of the model.
    assert all(r.agent_id != "Mo" for r in engine.requests)
    mod = [t for t in turns if t.speaker == "Mo"]
    assert all(t.scripted and t.kind == TurnKind.MODERATOR for t in mod)
    assert "Build a bridge over the river" in mod[0].content and "Ann" in mod[0].content
    # Each question names a participant and that participant's own concern; they answer next.
    for i, t in enumerate(turns):
        if t.speaker == "Mo" and t.phase == QUESTIONS:
            target = turns[i + 1].speaker
            assert t.content.startswith(f"{target},")
            concern = STANCES[target]["concern"]
            assert concern in t.content or target in t.content
            assert turns[i + 2].speaker != target  # someone else replies
            assert f"{target} just spoke" not in t.content
    started = [e for e in events if isinstance(e, TurnStarted)]
    assert [e.phase for e in started] == phases


async def test_question_replies_come_from_another_side() -> None:
    scheduler = Scheduler(varied(), agenda_spec(), PEOPLE)
    await scheduler.run()
    turns = scheduler.turns
    sides = {n: s["side"] for n, s in STANCES.items()}
    for i, t in enumerate(turns[:-2]):
        if t.speaker == "Mo" and t.phase == QUESTIONS:
            assert sides[turns[i + 2].speaker] != sides[turns[i + 1].speaker]


async def test_agenda_prompts_state_sides_and_concerns_and_stay_append_only() -> None:
    engine = varied()
    await Scheduler(engine, agenda_spec(), PEOPLE).run()
    ann = [r.prompt for r in engine.requests if r.agent_id == "Ann"]
    assert "- Bob, Bob the tester: against the motion. Cares most about the cost of upkeep." in ann[0]
    assert "- Cy, Cy the tester: undecided. Cares most about noise at night." in ann[0]
    assert "crosswalk" in ann[0]  # the exemplar exchange
    for before, after in zip(ann, ann[1:]):
        # Each prompt ends on Ann's cue and the opening of her turn (debate.openings); the rest only grows.
        head, cue, opening = before.rpartition("\nAnn:")
        assert cue and opening.strip() in all_openings()
        assert after.startswith(head + "\n")


async def test_short_agenda_keeps_phases_in_order() -> None:
    scheduler = Scheduler(varied(), agenda_spec(max_turns=8), PEOPLE)
    await scheduler.run()
    phases = [t.phase for t in scheduler.turns]
    assert phases[:5] == [OPENING] * 5 and set(phases[5:]) == {CLOSING}


async def test_agenda_without_moderator_still_has_phases() -> None:
    spec = agenda_spec(moderator=None, max_turns=12)
    scheduler = Scheduler(varied(), spec, PEOPLE[:4])
    await scheduler.run()
    turns = scheduler.turns
    assert [t.speaker for t in turns[:4]] == ["Ann", "Bob", "Cy", "Dee"]
    assert [t.phase for t in turns[:4]] == [OPENING] * 4 and turns[-1].phase == CLOSING
    assert not any(t.scripted for t in turns)


@pytest.mark.parametrize(
    ("stances", "message"),
    [
        ({"Zed": {"side": "for", "concern": "the view"}}, "'Zed' is not one of the participants"),
        ({"Mo": {"side": "for", "concern": "the view"}}, "the moderator 'Mo' takes no side"),
        ({"Ann": {"side": "maybe", "concern": "the view"}}, "stances.Ann.side"),
        ({"Ann": {"side": "for"}}, "field 'stances.Ann.concern' is required"),
        ({"Ann": {"side": "for", "concern": "x", "mood": "grumpy"}}, "stances.Ann.mood' is not a known field"),
    ],
)
def test_bad_stances_are_one_line_errors(stances: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        agenda_spec(stances=stances)
    text = str(caught.value)
    assert message in text and "\n" not in text and text.startswith("test:")


async def test_persona_default_stance_is_used_when_the_file_gives_none() -> None:
    people = [persona("Ann", side="against", concern="the old oak tree"), *PEOPLE[1:]]
    engine = varied()
    await Scheduler(engine, agenda_spec(stances={}), people).run()
    prompt = engine.requests[0].prompt
    assert "- Ann, Ann the tester: against the motion. Cares most about the old oak tree." in prompt
    assert "- Bob, Bob the tester." in prompt  # no stance anywhere: just who they are


async def test_unclean_turn_is_resampled_then_recorded_degenerate() -> None:
    replies = {
        "Ann": iter(["Ann: I speak for Ann.", "Ann argues that the bridge helps the school run."]),
        "Bob": iter(["Yes.", "*nods*", "Ann: I agree with Bob.", "```code```", "never used"]),
    }
    engine = ScriptedEngine(lambda r: next(replies[r.agent_id]))
    spec = TownHallSpec(motion="Build a bridge.", participants=["Ann", "Bob"], max_turns=2, seed=5)
    scheduler = Scheduler(engine, spec, PEOPLE)
    await scheduler.run()
    ann, bob = scheduler.turns
    # Ann's own tag is not another participant's: the first try is clean.
    assert ann.status == TurnStatus.COMPLETE and ann.retries == 0
    assert bob.status == TurnStatus.DEGENERATE and bob.retries == MAX_RESAMPLES
    bob_requests = [r for r in engine.requests if r.agent_id == "Bob"]
    assert len(bob_requests) == MAX_RESAMPLES + 1
    assert len({r.sampling.seed for r in bob_requests}) == MAX_RESAMPLES + 1
    assert len({r.prompt for r in bob_requests}) == 1  # a resample draws again from the same prompt


async def test_echo_is_resampled_and_degenerate_turns_stay_out_of_prompts() -> None:
    replies = iter(
        ["The bridge will cost ten million dollars.", "The bridge will cost ten million dollars.",
         "Ten million dollars is a lot, but the ferry costs more every year.", "Ann speaks again now."]
    )
    engine = ScriptedEngine(lambda r: next(replies))
    spec = TownHallSpec(
        motion="Build a bridge.", participants=["Ann", "Bob"], max_turns=3, seed=5,
        sampling={"no_repeat_ngram_size": 0},  # the scripted script must reach the scheduler's check unchanged
    )
    scheduler = Scheduler(engine, spec, PEOPLE)
    await scheduler.run()
    statuses = [(t.speaker, t.status, t.retries) for t in scheduler.turns]
    assert statuses == [("Ann", TurnStatus.COMPLETE, 0), ("Bob", TurnStatus.COMPLETE, 1),
                        ("Ann", TurnStatus.COMPLETE, 0)]
    # What was said is handed to the engine for its n-gram ban, one text per turn, after
    # the exemplar's lines and the speaker's own examples, which a small model copies.
    banned = engine.requests[-1].banned_texts
    assert banned[-2:] == (
        "The bridge will cost ten million dollars.",
        "Ten million dollars is a lot, but the ferry costs more every year.",
    )
    assert any("Half my customers are over seventy" in text for text in banned[:-2])


def test_unknown_policy_lists_agenda() -> None:
    with pytest.raises(ConfigError) as caught:
        spec_from_data({"motion": "m", "participants": ["Ann"], "policy": "chaos"}, "x.toml")
    assert "agenda" in str(caught.value)


WORDS = ["bridges", "repairs", "inspections", "tolls", "ferries", "lights", "rails", "pylons", "cables", "paint"]


async def test_a_draw_that_declares_the_other_side_is_never_kept() -> None:
    """Bob is against: every first draw of his says it is for, and is drawn again."""
    draws, others = itertools.count(1), itertools.count(1)

    def script(request: object) -> str:
        agent = getattr(request, "agent_id")
        if agent != "Bob":
            return f"{agent} gives reason number {next(others)}."
        n = next(draws)  # Bob's odd draws (the first of each turn) say he is for
        return "Yes, I am for the motion after all." if n % 2 else f"{WORDS[n % len(WORDS)]} cost {n} thousand."

    scheduler = Scheduler(ScriptedEngine(script), agenda_spec(), PEOPLE)
    await scheduler.run()
    bob = [t for t in scheduler.turns if t.speaker == "Bob"]
    assert bob and all(t.status == TurnStatus.COMPLETE and t.retries >= 1 for t in bob)
    replies = [r.split("{name}, ", 1)[1] for r in AGAINST_REPLY]
    assert all(t.content.startswith(AGAINST) or any(r in t.content for r in replies) for t in bob)
    assert not any(contradicts(t.content, "against") for t in bob)
    assert all("for the motion after all" not in t.content for t in scheduler.turns)


async def test_unanchored_turns_are_the_models_words_alone() -> None:
    scheduler = Scheduler(varied(), agenda_spec(anchored_turns=False, max_turns=8), PEOPLE)
    await scheduler.run()
    spoken = [t for t in scheduler.turns if not t.scripted]
    assert spoken and all(t.content.startswith(f"{t.speaker} says point") for t in spoken)
