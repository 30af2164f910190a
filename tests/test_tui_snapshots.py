"""Snapshots of the main screen (at 120x40, 80x24 and 200x50), the new-town-hall dialog and
the sessions browser (at 120x40).

Deterministic by construction: scripted replies, fixed engine stats (SteadyEngine), a
counter clock, fixed session ids, UTC for dates, no cursor blink, no live spinner.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import wait_until
from test_tui_support import (
    REPLIES,
    SIZE,
    SteadyEngine,
    counter_clock,
    make_app,
    personas,
)
from textual.widgets import Input

from townhall.store import Store
from townhall.turns import TurnStatus


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def finished_app(store: Store | None = None, session_id: str = "snap-main", turns: int = 4):
    app = make_app(SteadyEngine(REPLIES), store=store, turns=turns, session_id=session_id, clock=counter_clock())
    # A fixed pick, so a persona added to agents/ later does not change the dialog's picture.
    app.available_personas = personas(("Margaret", "Priya", "Stacy", "Walt", "pogi"))
    return app


async def _wait_finished(pilot) -> None:
    """Finished, and the transcript's own queue has drawn every turn as recorded."""
    screen = pilot.app.debate_screen
    await wait_until(lambda: screen.state == "finished", timeout=20)
    views = screen.transcript.views
    await wait_until(lambda: len(views) == len(screen.scheduler.turns) and all(v.status is not TurnStatus.STREAMING for v in views.values()), timeout=20)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def test_main_screen(snap_compare) -> None:
    assert snap_compare(finished_app(), terminal_size=SIZE, run_before=_wait_finished)


def test_main_screen_80x24(snap_compare) -> None:
    """The most common terminal: a name-column roster, no stats pane, a readable transcript."""
    assert snap_compare(finished_app(), terminal_size=(80, 24), run_before=_wait_finished)


def test_main_screen_200x50(snap_compare) -> None:
    assert snap_compare(finished_app(), terminal_size=(200, 50), run_before=_wait_finished)


def test_new_townhall_dialog(snap_compare) -> None:
    async def open_dialog(pilot) -> None:
        await _wait_finished(pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(finished_app(), terminal_size=SIZE, run_before=open_dialog)


def test_sessions_browser(snap_compare, tmp_path: Path) -> None:
    import asyncio

    store = Store.open(tmp_path / "townhall.db")

    async def record_one() -> None:
        app = finished_app(store, session_id="snap-older", turns=2)
        async with app.run_test(size=SIZE):
            await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)

    asyncio.run(record_one())

    async def open_sessions(pilot) -> None:
        await _wait_finished(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()

    try:
        assert snap_compare(finished_app(store, session_id="snap-main"), terminal_size=SIZE, run_before=open_sessions)
    finally:
        store.close()
