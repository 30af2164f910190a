"""Addressed interjections on the scripted engine: who answers under each policy, the cue, the agenda resuming."""

from __future__ import annotations

import itertools

import pytest

from townhall.debate.addressing import best_fit, open_question
from townhall.debate.prompts import ChatFormat, Line, TranscriptFormat
from townhall.debate.scheduler import Scheduler
from townhall.domain.events import TurnFinished
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec, spec_from_data
from townhall.domain.turns import Turn, TurnKind
from townhall.engine.scripted import ScriptedEngine


def persona(name: str, **extra: object) -> Persona:
    return Persona(name=name, title=f"{name} the tester", bio=f"{name} lives in town.", style="plain", **extra)


PEOPLE = [persona("Ann"), persona("Bob"), persona("Cy"), persona("Mo", moderator=True)]
STANCES = {
    "Ann": {"side": "for", "concern": "the school run"},
    "Bob": {"side": "against", "concern": "the cost of upkeep"},
    "Cy": {"side": "undecided", "concern": "noise at night"},
}
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def town(policy: str, **fields: object) -> TownHallSpec:
    values: dict[str, object] = {"title": "Bridge Hearing", "motion": "Build a bridge over the river.",
                                 "participants": ["Ann", "Bob", "Cy"], "moderator": "Mo", "policy": policy,
                                 "max_turns": 8, "stances": STANCES, "seed": 7, "anchored_turns": False,
                                 "ballot": False}
    values.update(fields)
    return spec_from_data(values, "test")


def varied() -> ScriptedEngine:
    counter = itertools.count(1)
    words = ["river", "school", "money", "traffic", "night", "shop", "trees", "fish", "bus", "taxes", "park", "rain"]
    # Never the speaker's own name (a turn that says it is drawn again), no 3-gram shared.
    return ScriptedEngine(lambda r: f"Point {next(counter)} concerns the {words[next(counter) % 12]}.")


async def run_with(spec: TownHallSpec, text: str | None, after: int, source: str = "box") -> tuple[Scheduler,
                                                                                                    ScriptedEngine]:
    engine = varied()
    scheduler = Scheduler(engine, spec, PEOPLE)

    def on_event(event: object) -> None:
        if text is not None and isinstance(event, TurnFinished) and event.turn.index == after:
            scheduler.interject(text, source=source)

    scheduler.subscribe(on_event)
    await scheduler.run()
    return scheduler, engine


@pytest.mark.parametrize("policy", ["round_robin", "random", "moderator", "mention", "agenda"])
async def test_the_named_participant_answers_next_under_every_policy(policy: str) -> None:
    scheduler, engine = await run_with(town(policy), "cy, what would the noise be at night?", after=1, source="file")
    turns = scheduler.turns
    question = turns[2]
    assert (question.kind, question.source, question.addressed) == (TurnKind.AUDIENCE, "file", "Cy")
    answer = turns[3]
    assert (answer.speaker, answer.answers, answer.scripted) == ("Cy", question.node, False)
    # the cue: the minutes say the chair gives Cy the floor, just before "Cy:"
    cy_prompt = next(r.prompt for r in engine.requests if r.agent_id == "Cy" and "cy, what would" in r.prompt)
    assert cy_prompt.endswith("The chair gives the floor to Cy, to answer the question from the audience.\nCy:")
    # and it stays in every later prompt of every agent, so prompts stay append-only
    later = [r.prompt for r in engine.requests if r.agent_id is not None and "cy, what would" in r.prompt][1:]
    assert later and all("audience.\nCy: " in p for p in later)


async def test_the_agenda_resumes_where_it_was_after_the_answer() -> None:
    baseline, _ = await run_with(town("agenda", max_turns=14), None, after=0)
    asked, _ = await run_with(town("agenda", max_turns=14), "Bob, what would the upkeep cost per year?", after=3)
    plan = [(t.speaker, t.phase, t.content if t.scripted else "") for t in baseline.turns]
    kept = [(t.speaker, t.phase, t.content if t.scripted else "") for t in asked.turns
            if t.kind != TurnKind.AUDIENCE and t.answers is None]
    assert kept == plan  # no slot lost or skipped, the adjournment included
    assert [t.speaker for t in asked.turns[4:6]] == ["Audience", "Bob"]


@pytest.mark.parametrize(("text", "to", "fits"), [
    ("What would the ramps cost per year?", "Bob", True),  # "cost" meets Bob's concern
    ("Mo, is anyone worried about the noise at night?", "Cy", True),  # the moderator named: handed on
    ("Why?", None, False),  # nothing fits: the floor, from the next participant on the agenda
])
async def test_under_the_agenda_the_moderator_hands_on_a_question_naming_no_participant(
        text: str, to: str | None, fits: bool) -> None:
    scheduler, _ = await run_with(town("agenda", max_turns=14), text, after=3)
    turns = scheduler.turns
    question, handoff, answer = turns[4], turns[5], turns[6]
    assert question.addressed == ("Mo" if text.startswith("Mo,") else None)
    assert (handoff.speaker, handoff.scripted, handoff.answers) == ("Mo", True, question.node)
    expected = to or handoff.addressed
    assert expected in ("Ann", "Bob", "Cy") and handoff.addressed == expected and expected in handoff.content
    assert ("open to the floor" in handoff.content) is not fits
    assert (answer.speaker, answer.answers) == (expected, question.node)


@pytest.mark.parametrize("policy", ["round_robin", "random", "moderator", "mention"])
async def test_elsewhere_the_next_speaker_answers_an_unaddressed_question_with_the_cue(policy: str) -> None:
    scheduler, engine = await run_with(town(policy), "What about the trees by the river?", after=1)
    turns = scheduler.turns
    question, answer = turns[2], turns[3]
    assert question.addressed is None and answer.answers == question.node and answer.kind != TurnKind.AUDIENCE
    lead = "answer the question from the audience.\n" if answer.speaker != "Mo" else "answers the question"
    request = next(r for r in engine.requests if r.agent_id == answer.speaker and "trees by the river" in r.prompt)
    assert lead in request.prompt


def test_chat_cue_says_it_answers_the_audience_and_stays_for_the_kv_state() -> None:
    spec = TownHallSpec(motion="Build a bridge?", participants=["Ann", "Bob"])
    ann, bob = persona("Ann"), persona("Bob")
    fmt = ChatFormat(spec, [ann, bob], CHATML)
    asked = [Line("Bob", "Bread first."), Line("Audience", "Ann, what would it cost?")]
    before = fmt.messages(ann, None, asked, answering=True)
    assert "the audience asked you a question" in before[-1]["content"]
    after = fmt.messages(ann, None, [*asked, Line("Ann", "Ten thousand.", answering=True), Line("Bob", "Too much.")])
    assert after[: len(before)] == before  # the same cue is rendered again before her answer
    assert "the audience asked you a question" not in after[-1]["content"]


def test_transcript_lead_without_a_chair() -> None:
    spec = TownHallSpec(motion="Build a bridge?", participants=["Ann", "Bob"])
    fmt = TranscriptFormat(spec, [persona("Ann"), persona("Bob")])
    prompt = fmt.render(persona("Ann"), None, [Line("Audience", "Ann?")], answering=True).prompt
    assert prompt.endswith("Audience: Ann?\nAnn answers the question from the audience.\nAnn:")


def test_best_fit_and_open_question() -> None:
    concerns = {"Ann": "the school run", "Bob": "the cost of upkeep", "Cy": "noise at night"}
    assert best_fit("What would the ramps cost per year?", concerns) == "Bob"
    assert best_fit("Will the schools be safe?", concerns) == "Ann"
    assert best_fit("Why?", concerns) is None
    q = Turn(index=1, speaker="Audience", kind=TurnKind.AUDIENCE, content="Why?")
    debate = Turn(index=0, speaker="Ann", kind=TurnKind.AGENT, content="Yes.")
    assert open_question([debate, q]) is q
    answered = Turn(index=2, speaker="Bob", kind=TurnKind.AGENT, content="Because.", answers=q.node)
    assert open_question([debate, q, answered]) is None
    # a question the debate went past (an older session) is never answered late
    assert open_question([q, debate]) is None
