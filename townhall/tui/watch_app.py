"""`townhall watch`'s app: one read-only watch screen over a debate another process records.

No engine, no steering, no new town hall or sessions browser: the quit key, the user's theme
and keymap, the error dialog and the palette's watch commands. Several may follow one debate
at once; none changes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import BindingType
from textual.screen import Screen

from townhall.paths import user_data_dir
from townhall.store.follow import Follower
from townhall.tui.app import apply_settings
from townhall.tui.bindings import ACTIONS, QUIT_ALWAYS
from townhall.tui.config import TuiConfig
from townhall.tui.messages import ShowError
from townhall.tui.screens.error import ErrorScreen
from townhall.tui.screenshots import take_screenshot
from townhall.tui.screens.watch_screen import POLL_S, WATCH_ACTIONS, WatchScreen

QUIT = next(a for a in ACTIONS if a.id == "townhall.quit")
SCREENSHOT = next(a for a in ACTIONS if a.id == "townhall.screenshot")


class WatchApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Townhall (watching)"
    BINDINGS: ClassVar[list[BindingType]] = [QUIT.binding(), SCREENSHOT.binding(), QUIT_ALWAYS]

    def __init__(self, follower: Follower, *, config: TuiConfig | None = None, exports_dir: Path | None = None,
                 poll_s: float = POLL_S) -> None:
        super().__init__()
        self.config = config or TuiConfig()
        self.exports_dir = exports_dir or user_data_dir() / "exports"
        self.watch_screen = WatchScreen(follower, exports_dir=self.exports_dir,
                                        stats_position=self.config.stats_position, poll_s=poll_s)

    def get_default_screen(self) -> Screen[Any]:
        return self.watch_screen

    def on_mount(self) -> None:
        apply_settings(self, self.config)

    def on_show_error(self, message: ShowError) -> None:
        self.push_screen(ErrorScreen(message.title, message.text))

    def action_screenshot_svg(self) -> None:
        take_screenshot(self, self.exports_dir)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's commands (ours names the screenshot) plus what a watcher may do, from the watch screen."""
        yield from (c for c in super().get_system_commands(screen) if c.title != "Screenshot")
        yield SystemCommand(SCREENSHOT.label, SCREENSHOT.help, self.action_screenshot_svg)
        if screen is not self.watch_screen:
            return
        for action in ACTIONS:
            if action.action in WATCH_ACTIONS:
                yield SystemCommand(action.label, action.help, self._runner(action.action))

    def _runner(self, action: str) -> Callable[[], Any]:
        async def run() -> None:
            await self.run_action(action, self.watch_screen)

        return run
