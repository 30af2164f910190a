"""Each faithfulness mechanism on the real models: sides for a motion alone, turns anchored in
the speaker's side, a turn that says the other side never kept, the ballot calibrated against
the room, and a chat model that neither names itself nor says the other side.

The figures themselves (side match, contradiction, vote agreement over six town halls, read by
a larger judge model) are the benchmark's: `townhall bench quality --judge`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.debate.openings import AGAINST, AGAINST_REPLY, FOR, FOR_REPLY, contradicts
from townhall.debate.quality import names_self
from townhall.debate.session import Session, SessionPlan
from townhall.domain.events import OutcomeDecided, StanceMeasured
from townhall.domain.personas import PersonaRegistry
from townhall.domain.spec import TownHallSpec, spec_from_data
from townhall.domain.turns import Turn, TurnStatus
from townhall.engine.local import LocalEngine

pytestmark = pytest.mark.model

STANCES = {
    "Walt": {"side": "against", "concern": "who pays to maintain a park for the next thirty years"},
    "Priya": {"side": "for", "concern": "bringing families and foot traffic to Main Street"},
    "Jax": {"side": "for", "concern": "a safe place for teenagers to skate and meet"},
    "Ines": {"side": "against", "concern": "lighting and safety near the tracks at night"},
}


def town_hall(**fields: object) -> TownHallSpec:
    values: dict[str, object] = {
        "title": "Rail Yard Town Hall", "motion": "The city should turn the old rail yard into a public park.",
        "moderator": "Margaret", "participants": ["Walt", "Priya", "Jax", "Ines"], "policy": "agenda",
        "max_turns": 24, "seed": 11, "stances": STANCES, "context_strategy": "truncate",
    }
    values.update(fields)
    return spec_from_data(values, "test")


def opens_in(side: str, text: str) -> bool:
    forms = FOR if side == "for" else AGAINST
    replies = [r.split("{name}, ", 1)[1] for r in (FOR_REPLY if side == "for" else AGAINST_REPLY)]
    return text.startswith(forms) or any(r in text for r in replies)


def kept_turns(session: Session, sides: dict[str, str]) -> list[Turn]:
    """The model-written turns kept as said, of the speakers with a side."""
    return [t for t in session.scheduler.turns
            if not t.scripted and t.speaker in sides and t.status == TurnStatus.COMPLETE]


async def run(engine: LocalEngine, spec: TownHallSpec) -> tuple[Session, list[object]]:
    events: list[object] = []
    personas = PersonaRegistry.default()
    names = [spec.moderator, *spec.participants] if spec.moderator else list(spec.participants)
    session = Session(engine, SessionPlan(spec, personas.resolve(names)), views=[events.append])
    await session.run()
    return session, events


async def test_every_kept_turn_argues_its_speakers_side_and_the_vote_follows(model_path: Path) -> None:
    engine = LocalEngine(model_path, n_ctx=4096)
    try:
        session, events = await run(engine, town_hall())
    finally:
        await engine.aclose()
    sides = {name: stance["side"] for name, stance in STANCES.items()}
    kept = kept_turns(session, sides)
    assert len(kept) >= 12
    for turn in kept:
        assert opens_in(sides[turn.speaker], turn.content), turn.content
        assert not contradicts(turn.content, sides[turn.speaker]), turn.content  # "I'm for it" from Walt: never
    # Every meter reading is calibrated against the room: between 0 and 1, and not all on one side.
    readings = [e for e in events if isinstance(e, StanceMeasured)]
    assert readings and all(0 < e.p_for < 1 for e in readings)
    outcome = next(e for e in events if isinstance(e, OutcomeDecided))
    votes = {v.agent: v.choice for v in outcome.votes}
    assert sum(votes[name] == side for name, side in sides.items()) >= 3, votes


async def test_a_motion_alone_is_debated_with_balanced_sides(model_path: Path) -> None:
    spec = town_hall(stances={}, max_turns=9, motion="The town should open the library on Sundays.", title=None)
    engine = LocalEngine(model_path, n_ctx=4096)
    try:
        session, _ = await run(engine, spec)
    finally:
        await engine.aclose()
    given = {name: stance.side for name, stance in session.scheduler.spec.stances.items()}
    assert sorted(given.values()) == ["against", "against", "for", "for"]
    spoken = [t for t in session.scheduler.turns if not t.scripted and t.status == TurnStatus.COMPLETE]
    assert spoken and all(opens_in(given[t.speaker], t.content) for t in spoken if t.speaker in given)


@pytest.mark.smollm
async def test_the_chat_model_speaks_for_itself_and_its_side(smollm_path: Path) -> None:
    spec = town_hall(max_turns=12, n_ctx=2048, closing_phrase=None, sampling={"max_tokens": 48})
    engine = LocalEngine(smollm_path, n_ctx=2048)
    try:
        session, _ = await run(engine, spec)
    finally:
        await engine.aclose()
    sides = {name: stance["side"] for name, stance in STANCES.items()}
    kept = kept_turns(session, sides)
    assert len(kept) >= 5
    for turn in kept:
        assert not names_self(turn.content, turn.speaker), turn.content  # "Priya, your turn." from Priya: never
        assert not contradicts(turn.content, sides[turn.speaker]), turn.content
        assert opens_in(sides[turn.speaker], turn.content), turn.content
