"""The screenshot key: an SVG of the screen, named after the session and turn, in the exports folder."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import wait_until
from test_tui_support import SIZE, make_app

from townhall.tui.screenshots import screenshot_name, unused_path


def test_names_say_session_and_turn() -> None:
    assert screenshot_name("abc123", 7, 0.0) == "townhall-abc123-turn-007.svg"
    assert screenshot_name("a/b c", None, 0.0) == "townhall-a_b_c.svg"  # never a path or a space
    untitled = screenshot_name(None, None, 0.0)
    assert untitled.startswith("townhall-") and untitled.endswith(".svg")


def test_a_taken_name_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "x.svg").write_text("first")
    (tmp_path / "x-2.svg").write_text("second")
    assert unused_path(tmp_path, "x.svg") == tmp_path / "x-3.svg"


async def test_ctrl_s_saves_the_screen_as_svg(tmp_path: Path) -> None:
    app = make_app(turns=3, exports_dir=tmp_path / "exports")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.press("ctrl+s")
        await pilot.pause()
        first = tmp_path / "exports" / "townhall-tui-test-turn-003.svg"
        second = tmp_path / "exports" / "townhall-tui-test-turn-003-2.svg"
        assert first.exists() and second.exists()
        svg = first.read_text(encoding="utf-8")
        assert svg.startswith("<svg") and "Stacy" in svg and "twenty" in svg  # the transcript, as drawn
        notes = [n.message for n in app._notifications]
        assert f"Saved {first}" in notes and f"Saved {second}" in notes


async def test_a_folder_that_cannot_be_written_is_one_notification(tmp_path: Path) -> None:
    blocked = tmp_path / "exports"
    blocked.write_text("a file where the folder should be")
    app = make_app(turns=1, exports_dir=blocked)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.debate_screen.state == "finished", timeout=20)
        await pilot.press("ctrl+s")
        await pilot.pause()
        notes = [(n.message, n.severity) for n in app._notifications]
        assert any(m.startswith(f"Cannot save the screenshot in {blocked}") and s == "error" for m, s in notes)
    assert blocked.read_text() == "a file where the folder should be"
    assert not any(name.endswith(".svg") for name in os.listdir(tmp_path))


async def test_the_palette_offers_our_screenshot_not_textuals(tmp_path: Path) -> None:
    app = make_app(turns=1, exports_dir=tmp_path)
    async with app.run_test(size=SIZE):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert titles.count("Screenshot") == 1
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Screenshot")
        assert "session and turn" in command.help
