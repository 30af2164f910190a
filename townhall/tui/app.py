"""The Townhall app: routes between the debate screen and the dialogs, and keeps settings.

The app owns no model and no database: it is handed an engine (or a factory for one),
an optional store and the town hall to run. What a debate needs lives on the debate
screen (`screens/debate_screen.py`); the app registers themes, applies the keymap,
remembers the theme, the stats pane and the reading pace, shows error dialogs and opens the other screens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from townhall.engine.base import Engine
from townhall.engine.factory import EngineConfig
from townhall.errors import TownhallError
from townhall.paths import user_data_dir
from townhall.domain.personas import Persona
from townhall.debate.reading_pace import ReadingPace
from townhall.tui.bindings import ACTIONS, app_bindings
from townhall.tui.config import TuiConfig, config_path, save_config
from townhall.debate.session import Feed, SchedulerFactory, SessionPlan
from townhall.tui.engine_holder import EngineFactory, EngineHolder
from townhall.tui.messages import ResumeAfterRetry, ShowError
from townhall.tui.screens.debate_screen import DebateScreen
from townhall.tui.screens.error import ErrorScreen
from townhall.tui.screenshots import take_screenshot
from townhall.tui.themes import DEFAULT_THEME, load_themes

if TYPE_CHECKING:
    from townhall.engine.discovery import FoundModel
    from townhall.store import Store
    from townhall.tui.screens.new_townhall import NewTownhall
    from townhall.tui.screens.sessions import ResumeChoice


class TownhallApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Townhall"
    BINDINGS: ClassVar[list[BindingType]] = [*app_bindings()]

    def __init__(
        self,
        debate: SessionPlan,
        *,
        engine: Engine | None = None,
        engine_factory: EngineFactory | None = None,
        engine_config: EngineConfig | None = None,
        store: Store | None = None,
        config: TuiConfig | None = None,
        available_personas: Sequence[Persona] | None = None,
        scheduler_factory: SchedulerFactory | None = None,
        clock: Callable[[], float] = time.time,
        save_settings: bool = True,
        exports_dir: Path | None = None,
        feeds: Sequence[Feed] = (),
        find_models: Callable[[], Sequence[FoundModel]] | None = None,
        pace: ReadingPace | None = None,
    ) -> None:
        """`find_models` lists the models the new-town-hall dialog offers (none when not given);
        `pace` is the reading pace the launcher chose (`tui --pace`, else the setting `pace_wpm`):
        a window built without one (a test's, another program's) is flat out."""
        super().__init__()
        self.find_models = find_models
        self.engines = EngineHolder(engine, engine_factory, engine_config)
        self.store = store
        self.config = config or TuiConfig()
        self.available_personas = list(available_personas or debate.personas)
        self.save_settings = save_settings
        self.exports_dir = exports_dir or user_data_dir() / "exports"
        self.pace = pace if pace is not None else ReadingPace()
        self._pace_wpm = self.pace.wpm  # what the keys change: a new pace is remembered
        self.pace.subscribe(self._remember_pace)
        self.debate_screen = DebateScreen(
            debate,
            self.engines,
            store=store,
            stats_position=self.config.stats_position,
            scheduler_factory=scheduler_factory,
            clock=clock,
            exports_dir=self.exports_dir,
            feeds=feeds,
            pace=self.pace,
        )

    def get_default_screen(self) -> Screen[Any]:
        return self.debate_screen

    def on_mount(self) -> None:
        apply_settings(self, self.config)
        self.theme_changed_signal.subscribe(self, self._remember_theme)

    # -- settings --------------------------------------------------------------
    def _save(self, what: str) -> None:
        if not self.save_settings:
            return
        try:
            save_config(self.config)
        except OSError as exc:
            where = exc.filename or config_path()
            self.notify(f"Could not save {what} to {where}: {exc.strerror or exc}", severity="warning", markup=False)

    def _remember_theme(self, theme: Any) -> None:
        self.config.theme = theme.name
        self._save("the theme choice")

    def _remember_pace(self) -> None:
        """Called on every change of the pace object (holds too): saves only a new pace."""
        if self.pace.wpm != self._pace_wpm:
            self._pace_wpm = self.pace.wpm
            self.config.pace_wpm = self.pace.wpm or 0
            self._save("the reading pace")

    def on_debate_screen_stats_moved(self, message: DebateScreen.StatsMoved) -> None:
        self.config.stats_position = message.position
        self._save("the stats pane position")

    # -- dialogs ---------------------------------------------------------------
    def on_show_error(self, message: ShowError) -> None:
        self.push_screen(ErrorScreen(message.title, message.text))

    def action_new_townhall(self) -> None:
        from townhall.tui.screens.new_townhall import NewTownhallScreen

        screen = self.debate_screen
        self.push_screen(
            NewTownhallScreen(self.available_personas, screen.debate.spec, self.engines.config.model,
                              models=self.find_models() if self.find_models else ()),
            self._new_townhall_chosen,
        )

    async def _new_townhall_chosen(self, chosen: NewTownhall | None) -> None:
        if chosen is None:
            return
        engine_config = chosen.engine_config
        if engine_config is not None and not self.engines.can_rebuild:
            why = "This window was opened with a fixed engine; start `townhall tui --model PATH` instead."
            self.push_screen(ErrorScreen("Cannot change the model", why))
            return
        if engine_config is not None:
            engine_config = self.engines.config.model_copy(update={"model": engine_config.model})
        await self.debate_screen.replace_debate(chosen.plan, engine_config)

    def action_sessions(self) -> None:
        if self.store is None:
            self.notify("No database is open.", severity="warning")
            return
        from townhall.tui.screens.sessions import SessionsScreen

        current = self.debate_screen.session_id
        self.push_screen(SessionsScreen(self.store, self.exports_dir, current=current), self._session_chosen)

    async def on_resume_after_retry(self, message: ResumeAfterRetry) -> None:
        """The record failed mid-run and a retry wrote it all: the debate goes on, as a resume does."""
        from townhall.tui.screens.sessions import ResumeChoice

        await self._session_chosen(ResumeChoice(message.session_id))

    async def _session_chosen(self, choice: ResumeChoice | None) -> None:
        if choice is None or self.store is None:
            return
        from townhall.debate.session import NoTurnsLeft, plan_resume

        session_id = choice.session_id
        try:
            if choice.branch is not None:
                if session_id == self.debate_screen.session_id:
                    await self.debate_screen.stop_debate()  # its recorder must not write while the branch moves
                self.store.switch_branch(session_id, choice.branch)  # a resume goes on from the current branch
            try:
                plan = plan_resume(self.store, session_id)  # the same turn budget as `townhall resume`
            except NoTurnsLeft as used_up:
                # The CLI asks for --turns N here; the app has no flag, so it goes on for as many again.
                plan = plan_resume(self.store, session_id, more_turns=used_up.max_turns or None)
                self.notify(f"That session had used its {used_up.max_turns} turns: {used_up.max_turns} more.",
                            markup=False)
        except TownhallError as exc:
            self.push_screen(ErrorScreen("Cannot resume that session", str(exc)))
            return
        await self.debate_screen.replace_debate(plan)

    # -- leaving ---------------------------------------------------------------
    async def on_unmount(self) -> None:
        """However the app ends, end the debate first so the record is settled."""
        await self.debate_screen.stop_debate()
        await self.engines.aclose()

    async def action_quit(self) -> None:
        await self.debate_screen.stop_debate()
        self.workers.cancel_group(self.debate_screen, "debate")
        await self.engines.aclose()
        self.exit()

    def action_screenshot_svg(self) -> None:
        take_screenshot(self, self.exports_dir)

    # -- command palette -------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's commands (but its screenshot: ours names the file) plus ours; debate commands only
        from the debate screen."""
        yield from (c for c in super().get_system_commands(screen) if c.title != "Screenshot")
        for action in ACTIONS:
            if action.id == "townhall.theme":
                continue  # Textual already lists "Theme"
            if action.scope == "debate" and screen is not self.debate_screen:
                continue
            target = self.debate_screen if action.scope == "debate" else self
            yield SystemCommand(action.label, action.help, self._runner(action.action, target))

    def _runner(self, action: str, target: Any) -> Callable[[], Any]:
        async def run() -> None:
            await self.run_action(action, target)

        return run


def apply_settings(app: App[Any], config: TuiConfig) -> None:
    """The user's themes, theme and keymap on `app` (the debate app, and `townhall watch`'s)."""
    themes, problems = load_themes()
    for theme in themes:
        app.register_theme(theme)
    wanted = config.theme or DEFAULT_THEME
    app.theme = wanted if wanted in app.available_themes else DEFAULT_THEME
    if config.keymap:
        unknown = sorted(set(config.keymap) - known_binding_ids())
        if unknown:
            app.notify(
                f"config.toml [keymap]: unknown binding id(s) {', '.join(unknown)} (see `townhall tui --help`)",
                severity="warning",
                markup=False,
                timeout=10,
            )
        app.set_keymap(config.keymap)
    for problem in problems:
        app.notify(problem, title="Theme skipped", severity="warning", markup=False)


def known_binding_ids() -> set[str]:
    """Every binding id a user may remap, across the app, its screens and widgets."""
    from townhall.tui.screens.new_townhall import NewTownhallScreen
    from townhall.tui.screens.sessions import (
        ConfirmScreen,
        ReplayScreen,
        SessionsScreen,
    )
    from townhall.tui.screens.minutes import MinutesScreen
    from townhall.tui.screens.tally import TallyScreen
    from townhall.tui.screens.edit_turn import EditTurnScreen
    from townhall.tui.widgets.interject import InterjectBox
    from townhall.tui.screens.record_error import RecordErrorScreen

    owners: list[Any] = [
        TownhallApp, DebateScreen, InterjectBox, ErrorScreen, NewTownhallScreen, SessionsScreen, ReplayScreen,
        ConfirmScreen,
        TallyScreen, MinutesScreen, EditTurnScreen, RecordErrorScreen,
    ]
    return {b.id for owner in owners for b in owner.BINDINGS if isinstance(b, Binding) and b.id}
