"""Snapshots of the main screen (at 120x40, 80x24 and 200x50), the new-town-hall dialog,
the sessions browser, and the stance meter, tally and outcome banner (at 120x40; the
narrow stance roster at 80x24 in the light theme).

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
from townhall.domain.turns import TurnStatus


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
    await wait_until(lambda: len(views) == len(screen.scheduler.turns)
                     and all(v.status is not TurnStatus.STREAMING for v in views.values()), timeout=20)
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


# -- the stance meter, the tally, the ballot (readings published into the screen) -----------
READINGS = [(0.62, 0.35, 0.5), (0.7, 0.3, 0.58), (0.81, 0.44, 0.4)]


def _publish_readings(app) -> None:
    from townhall.domain.events import StanceMeasured

    screen = app.debate_screen
    for round_, row in enumerate(READINGS, start=1):
        for name, p in zip(("Stacy", "Walt", "Priya"), row):
            screen._on_scheduler_event(StanceMeasured(screen.session_id, name, round_, round_, p, "logits", 0.0))


def _publish_outcome(app) -> None:
    from townhall.domain.events import MinutesWritten, OutcomeDecided, Vote

    screen = app.debate_screen
    votes = (Vote("Stacy", "for", 0.81), Vote("Walt", "against", 0.44), Vote("Priya", "against", 0.4))
    screen._on_scheduler_event(OutcomeDecided(screen.session_id, votes, 1, 2, "defeated",
                                              "The motion is defeated, 2 to 1.", 0.0))
    screen._on_scheduler_event(MinutesWritten(screen.session_id, "Minutes of the town hall meeting", 0.0))


async def _with_stances(pilot, outcome: bool = False) -> None:
    await _wait_finished(pilot)
    _publish_readings(pilot.app)
    if outcome:
        _publish_outcome(pilot.app)
    screen = pilot.app.debate_screen
    await wait_until(lambda: len(screen._members["Priya"].stances) == len(READINGS)
                     and (not outcome or screen.minutes is not None))
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def test_stance_bars_and_chart(snap_compare) -> None:
    """Roster bars with their words, the stance chart in the stats pane."""
    assert snap_compare(finished_app(), terminal_size=SIZE, run_before=_with_stances)


def test_stance_bars_80x24_paper(snap_compare) -> None:
    """Narrow: the stance in words under each name; the light theme."""

    async def paper(pilot) -> None:
        pilot.app.theme = "townhall-paper"
        await _with_stances(pilot)

    assert snap_compare(finished_app(), terminal_size=(80, 24), run_before=paper)


def test_outcome_banner(snap_compare) -> None:
    async def outcome(pilot) -> None:
        await _with_stances(pilot, outcome=True)

    assert snap_compare(finished_app(), terminal_size=SIZE, run_before=outcome)


def test_tally_dialog(snap_compare) -> None:
    async def tally(pilot) -> None:
        await _with_stances(pilot)
        await pilot.press("t")
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(finished_app(), terminal_size=SIZE, run_before=tally)


# -- branches: a regenerated turn with its alternatives, the sessions browser's tree ---------
MARKUP_REPLY = "Plain text with [bold]x[/] and [link=http://x]y[/link] in it, shown as written."


def branched_app(store: Store, session_id: str = "snap-branch"):
    """Four turns, then turn 2 regenerated after the end (its alternative is the markup reply)."""
    app = make_app(SteadyEngine([*REPLIES, MARKUP_REPLY]), store=store, turns=4, session_id=session_id,
                   clock=counter_clock())
    app.available_personas = personas(("Margaret", "Priya", "Stacy", "Walt", "pogi"))
    return app


async def _regenerate_turn_2(pilot) -> None:
    await _wait_finished(pilot)
    screen = pilot.app.debate_screen
    first = screen.session
    await pilot.press("up", "up")
    await pilot.press("r")
    await wait_until(lambda: screen.session is not first and screen.state == "finished", timeout=20)
    await wait_until(lambda: 2 in screen.transcript.views
                     and "‹ 2/2 ›" in screen.transcript.views[2]._label_text().plain, timeout=20)
    pilot.app.clear_notifications()  # a toast that times out would make the picture depend on speed
    await _wait_finished(pilot)


@pytest.mark.parametrize("size", [SIZE, (80, 24)], ids=["120x40", "80x24"])
def test_turn_with_alternatives(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """The selected turn #2 on branch 2 of 2: "‹ 2/2 ›" in its label, its text literal."""
    store = Store.open(tmp_path / "townhall.db")
    try:
        assert snap_compare(branched_app(store), terminal_size=size, run_before=_regenerate_turn_2)
    finally:
        store.close()


@pytest.mark.parametrize("size", [SIZE, (80, 24)], ids=["120x40", "80x24"])
def test_sessions_browser_branch_tree(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """Three branches: the first, a regenerate of #2 (markup in its words, shown literally) and
    a fork from it after #1, current, marked ●."""
    store = Store.open(tmp_path / "townhall.db")

    async def open_tree(pilot) -> None:
        await _regenerate_turn_2(pilot)
        store.fork("snap-branch", at=1)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    try:
        assert snap_compare(branched_app(store), terminal_size=size, run_before=open_tree)
    finally:
        store.close()
