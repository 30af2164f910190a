"""An addressed question from the TUI's box on the real embedded model: the one named answers next."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_until
from test_tui_support import SIZE

from townhall.debate.session import SessionPlan
from townhall.domain.personas import PersonaRegistry
from townhall.domain.spec import default_spec_path, load_spec
from townhall.domain.turns import BOX, TurnKind
from townhall.store import Store
from townhall.tui.app import TownhallApp

pytestmark = pytest.mark.model


async def test_walt_answers_the_question_typed_in_the_box(model_path: Path, tmp_path: Path) -> None:
    from townhall.engine.local import LocalEngine

    engine = LocalEngine(model_path, n_ctx=2048, threads=2)
    spec = load_spec(default_spec_path(), max_turns=10)  # the default town hall: the agenda policy
    registry = PersonaRegistry.default()
    personas = registry.resolve([spec.moderator or "", *spec.participants])
    store = Store.open(tmp_path / "th.db")
    app = TownhallApp(SessionPlan(spec, personas, session_id="ask"), engine=engine, store=store,
                      available_personas=registry.all(), save_settings=False, exports_dir=tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.debate_screen
            await wait_until(lambda: screen.scheduler is not None and len(screen.scheduler.turns) >= 3, timeout=240)
            await pilot.press("p")
            await wait_until(lambda: screen.scheduler is not None and screen.scheduler.status == "paused", timeout=120)
            await pilot.press("i", *"Walt, what would the ramps cost per year?", "enter")
            await pilot.press("escape", "p")
            await wait_until(lambda: screen.state == "finished", timeout=600)
    finally:
        await engine.aclose()
    turns = store.turns("ask")
    asked = next(i for i, t in enumerate(turns) if t.kind is TurnKind.AUDIENCE)
    question, answer = turns[asked], turns[asked + 1]
    assert (question.source, question.addressed) == (BOX, "Walt")
    assert (answer.speaker, answer.answers) == ("Walt", question.node) and answer.content.strip()
    # the agenda resumes: the turn after the answer is the slot the question cut in on
    plan_turns = [t for t in turns if t.kind is not TurnKind.AUDIENCE and t.answers is None]
    assert turns[asked + 2].node == plan_turns[asked].node
    store.close()
