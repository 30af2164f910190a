"""The record fails during a debate in the TUI (issue 21): a real SQLite file made full with
`PRAGMA max_page_count` mid-run, the scripted engine, the app driven by Pilot.

The dialog appears over the transcript, which stays; *Retry* once there is room leaves every
turn shown in the database; *Save elsewhere* writes a file `townhall import` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import wait_until
from store_support import long_reply
from test_tui_support import SIZE, SteadyEngine, counter_clock, make_app, personas, spec
from textual.widgets import Button, Input

from townhall.debate.session import SessionPlan
from townhall.domain.events import Event
from townhall.domain.turns import TurnStatus
from townhall.engine.scripted import ScriptedEngine
from townhall.export import import_json
from townhall.store import Store
from townhall.store.recorder import Recorder
from townhall.tui.app import TownhallApp
from townhall.tui.screens.record_error import RecordErrorScreen



@pytest.fixture
def disk_full_at_turn(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`disk_full_at_turn(n)`: the database file is full from the nth TurnFinished on."""

    def arm(nth: int) -> None:
        original = Recorder._record
        seen = [0]

        def record(self: Recorder, event: Event) -> None:
            if type(event).__name__ == "TurnFinished":
                seen[0] += 1
                if seen[0] == nth:
                    conn = self._db.conn
                    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
            original(self, event)

        monkeypatch.setattr(Recorder, "_record", record)

    return arm


def app_on(db: Path, exports: Path, session_id: str = "tui-full"):
    store = Store.open(db)
    names = ("Stacy", "Walt", "Priya")
    plan = SessionPlan(spec(names, 5, sampling={"max_tokens": 1000}), personas(names), session_id=session_id)
    app = TownhallApp(plan, engine=SteadyEngine(long_reply()), store=store, available_personas=personas(names),
                      clock=counter_clock(), save_settings=False, exports_dir=exports)
    return app, store


async def dialog_shown(pilot) -> RecordErrorScreen:
    await wait_until(lambda: isinstance(pilot.app.screen, RecordErrorScreen), timeout=20)
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, RecordErrorScreen)
    return screen


def shown_turns(app) -> list[str]:
    return [t.content for t in app.debate_screen.scheduler.turns]


async def test_retry_after_room_is_freed_keeps_every_turn_shown(tmp_path: Path, disk_full_at_turn) -> None:
    disk_full_at_turn(2)
    app, store = app_on(tmp_path / "t.db", tmp_path / "exports")
    with store:
        async with app.run_test(size=SIZE) as pilot:
            dialog = await dialog_shown(pilot)
            screen = app.debate_screen
            assert screen.state == "paused" and len(screen.scheduler.turns) == 2  # stopped before the 3rd turn
            assert "cannot write to" in dialog.error_text and "the disk is full" in dialog.error_text
            assert len(screen.transcript.views) == 2  # the transcript stays on screen
            shown = shown_turns(app)
            await pilot.click("#record-error-retry")  # still full: the dialog stays and says so
            await pilot.pause()
            assert isinstance(app.screen, RecordErrorScreen) and "tried again" in dialog.error_text
            store.connection.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
            dialog.query_one("#record-error-retry", Button).press()  # the failed retry's toast lies over it
            await wait_until(lambda: not isinstance(app.screen, RecordErrorScreen), timeout=10)
            assert store.unsaved_turns("tui-full") == 0 and store.record_failure("tui-full") is None
            kept = store.turns("tui-full")
            assert [t.content for t in kept[:len(shown)]] == shown
            assert all(t.status is TurnStatus.COMPLETE for t in kept)
            # The record is whole again, so the debate goes on from it, on the same session.
            await wait_until(lambda: len(store.turns("tui-full")) > len(shown), timeout=20)
            assert app.debate_screen.session_id == "tui-full"
            assert [t.content for t in store.turns("tui-full")[:len(shown)]] == shown


async def test_save_elsewhere_writes_an_importable_file(tmp_path: Path, disk_full_at_turn) -> None:
    disk_full_at_turn(2)
    app, store = app_on(tmp_path / "t.db", tmp_path / "exports")
    target = tmp_path / "kept" / "session.json"
    with store:
        async with app.run_test(size=SIZE) as pilot:
            dialog = await dialog_shown(pilot)
            shown = shown_turns(app)
            assert dialog.query_one("#record-error-path", Input).value == str(
                tmp_path / "exports" / "t-unsaved-tui-full.json")
            dialog.query_one("#record-error-path", Input).value = str(target)
            await pilot.click("#record-error-save")
            await wait_until(lambda: not isinstance(app.screen, RecordErrorScreen), timeout=10)
    assert json.loads(target.read_text(encoding="utf-8"))
    with Store.open(tmp_path / "other.db") as other:
        new_id = import_json(other, target.read_text(encoding="utf-8"))
        assert [t.content for t in other.turns(new_id)] == shown


def test_record_error_dialog_snapshot(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      disk_full_at_turn) -> None:
    """Relative paths (from a fixed working folder) keep the dialog's text the same on every run."""
    monkeypatch.chdir(tmp_path)
    disk_full_at_turn(2)
    app, store = app_on(Path("t.db"), Path("exports"))

    async def until_dialog(pilot) -> None:
        dialog = await dialog_shown(pilot)
        dialog.query_one("#record-error-text").blur()
        await pilot.pause()

    with store:
        assert snap_compare(app, terminal_size=SIZE, run_before=until_dialog)


@pytest.mark.parametrize("fault", ["full disk", "no folder"])
async def test_settings_that_cannot_be_saved_are_a_notification_and_the_app_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The settings file's temporary name leads to `/dev/full` (a real ENOSPC: the file that was
    there stays whole), or its folder would be under `/dev/full` (it cannot be made)."""
    import os

    from townhall.tui.config import config_path

    folder = tmp_path / "config" if fault == "full disk" else Path("/dev/full/townhall")
    monkeypatch.setenv("TOWNHALL_CONFIG_DIR", str(folder))
    if fault == "full disk":
        folder.mkdir()
        config_path().write_text('theme = "townhall-night"\n', encoding="utf-8")
        (folder / f".config.toml.{os.getpid()}.tmp").symlink_to("/dev/full")
    app = make_app(ScriptedEngine(["Short."] * 10), turns=2, save_settings=True)
    async with app.run_test(size=SIZE):
        # The app saves the theme it starts with: that write meets the fault.
        await wait_until(lambda: any("Could not save" in n.message for n in app._notifications), timeout=10)
        cause = "No space left on device" if fault == "full disk" else "Not a directory"
        for message in (n.message for n in app._notifications if "Could not save" in n.message):
            assert f" to {folder}" in message and message.endswith(f": {cause}"), message
        assert app.is_running and app.screen is app.debate_screen
    if fault == "full disk":
        assert config_path().read_text(encoding="utf-8") == 'theme = "townhall-night"\n'
        assert sorted(p.name for p in folder.iterdir()) == ["config.toml"]
