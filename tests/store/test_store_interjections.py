"""Where an audience line came from and whom it addressed: stored, exported, imported."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from townhall.debate.session import Session, SessionPlan
from townhall.domain.events import TurnFinished
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import TurnKind
from townhall.engine.scripted import ScriptedEngine
from townhall.export import export_session, import_json
from townhall.store import Store


def persona(name: str) -> Persona:
    return Persona(name=name, title=f"{name} the tester", bio=f"{name} lives in town.", style="plain")


async def test_source_addressed_and_answers_round_trip(tmp_path: Path) -> None:
    counter = itertools.count(1)
    engine = ScriptedEngine(lambda r: f"Point {next(counter)} on the matter.")
    spec = TownHallSpec(motion="Build a bridge.", participants=["Ann", "Bob", "Cy"], max_turns=3, ballot=False,
                        anchored_turns=False)
    store = Store.open(tmp_path / "th.db")
    session = Session(engine, SessionPlan(spec, [persona("Ann"), persona("Bob"), persona("Cy")]), store=store)

    def on_event(event: object) -> None:
        if isinstance(event, TurnFinished) and event.turn.index == 0:
            session.scheduler.interject("Cy, and the noise?", source="file")

    session.subscribe(on_event)
    await session.run()
    turns = store.turns(session.session_id)
    question, answer = turns[1], turns[2]
    assert (question.kind, question.source, question.addressed) == (TurnKind.AUDIENCE, "file", "Cy")
    assert (answer.speaker, answer.answers) == ("Cy", question.node)
    data = json.loads(export_session(store, session.session_id, "json"))
    assert data["version"] == 4
    assert (data["turns"][1]["source"], data["turns"][1]["addressed"]) == ("file", "Cy")
    assert data["turns"][2]["answers"] == question.node
    again = store.turns(import_json(store, json.dumps(data)))
    assert (again[1].source, again[1].addressed, again[2].answers) == ("file", "Cy", question.node)
    store.close()
