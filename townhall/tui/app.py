"""The Townhall app: one screen to watch the debate, steer it and reach the record.

The app owns no model and no database: it is handed an engine (or a factory for one),
an optional store and the town hall to run. The scheduler runs as an asyncio task on
the app's own loop (the engine already keeps llama.cpp in a thread), and its events
come back as Textual messages, tokens coalesced to one batch per frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette as _PALETTE
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Footer

from townhall.engine.base import Engine
from townhall.engine.factory import EngineConfig
from townhall.errors import TownhallError
from townhall.events import (
    Event,
    EventBus,
    Paused,
    Resumed,
    SessionEnded,
    SessionStarted,
    StrategyApplied,
    TokenStreamed,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from townhall.paths import user_data_dir
from townhall.personas import Persona
from townhall.scheduler import SKIPPED
from townhall.tui.bindings import ACTIONS, app_bindings
from townhall.tui.colours import AUDIENCE_COLOUR, SUMMARY_COLOUR, speaker_colour
from townhall.tui.config import TuiConfig, save_config
from townhall.tui.debate import (
    Debate,
    EngineFactory,
    SchedulerFactory,
    SchedulerLike,
    default_scheduler_factory,
    export_to_file,
)
from townhall.tui.messages import DebateEvent, DebateFinished, EngineFailed, EngineReady, TokensArrived
from townhall.tui.screens.error import ErrorScreen
from townhall.tui.themes import DEFAULT_THEME, load_themes
from townhall.tui.widgets.header import TownhallHeader
from townhall.tui.widgets.interject import InterjectBox
from townhall.tui.widgets.roster import Member, Roster
from townhall.tui.widgets.stats import StatsPanel
from townhall.tui.widgets.transcript import Transcript
from townhall.turns import Turn, TurnKind

if TYPE_CHECKING:
    from townhall.store import Store

_DEBATE_ACTIONS = frozenset({"toggle_pause", "step", "interrupt", "skip", "interject", "export", "toggle_stats"})
FRAME_S = 1 / 12  # token batches per second: each one re-lays out the screen, and the CPU is shared with the model
STOP_TIMEOUT_S = 10.0


@dataclass
class _PendingTokens:
    session_id: str
    index: int
    speaker: str
    parts: list[str] = field(default_factory=list)


class TownhallApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Townhall"
    BINDINGS: ClassVar[list[BindingType]] = [*app_bindings()]

    def __init__(
        self,
        debate: Debate,
        *,
        engine: Engine | None = None,
        engine_factory: EngineFactory | None = None,
        engine_config: EngineConfig | None = None,
        store: Store | None = None,
        config: TuiConfig | None = None,
        available_personas: Sequence[Persona] | None = None,
        scheduler_factory: SchedulerFactory = default_scheduler_factory,
        clock: Callable[[], float] = time.time,
        save_settings: bool = True,
        exports_dir: Path | None = None,
    ) -> None:
        super().__init__()
        if engine is None and engine_factory is None:
            raise ValueError("TownhallApp needs an engine or an engine_factory")
        self.debate = debate
        self.engine: Engine | None = engine
        self._owns_engine = engine is None
        self.engine_factory = engine_factory
        self.engine_config = engine_config or EngineConfig()
        self.store = store
        self.config = config or TuiConfig()
        self.available_personas = list(available_personas or debate.personas)
        self.scheduler_factory = scheduler_factory
        self.clock = clock
        self.save_settings = save_settings
        self.exports_dir = exports_dir or user_data_dir() / "exports"
        self.scheduler: SchedulerLike | None = None
        self.session_id: str | None = None
        self.state = "loading"
        self.end_reason: str | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._run_task: asyncio.Task[str] | None = None
        self._pending: _PendingTokens | None = None
        self._flush_timer: Any = None
        self._turn_pieces = 0
        self._turn_started = 0.0
        self._turns_this_run = 0  # what "turn i of N" counts: the scheduler's max_turns ignores history
        self._spinner: Any = None
        self._theme_problems: list[str] = []
        self._members: dict[str, Member] = {}
        # Held, not queried: while a dialog or the sessions screen is on top,
        # `query_one` would search that screen instead of the main one.
        self.header = TownhallHeader(id="header")
        self.body = Container(id="body", classes="-stats-right")
        self.roster = Roster(id="roster")
        self.transcript = Transcript(id="transcript")
        self.stats = StatsPanel(id="stats")
        self.interject_box = InterjectBox(id="interject")

    # -- setup ---------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Header, roster, transcript, stats and the interjection box."""
        yield self.header
        with self.body:
            yield self.roster
            yield self.transcript
            yield self.stats
            yield self.interject_box
        yield Footer()

    def on_mount(self) -> None:
        themes, self._theme_problems = load_themes()
        for theme in themes:
            self.register_theme(theme)
        wanted = self.config.theme or DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.config.keymap:
            unknown = sorted(set(self.config.keymap) - known_binding_ids())
            if unknown:
                self.notify(
                    f"config.toml [keymap]: unknown binding id(s) {', '.join(unknown)} (see `townhall tui --help`)",
                    severity="warning",
                    markup=False,
                    timeout=10,
                )
            self.set_keymap(self.config.keymap)
        self._apply_stats_position(self.config.stats_position)
        self.transcript.focus()
        for problem in self._theme_problems:
            self.notify(problem, title="Theme skipped", severity="warning", markup=False)
        self._show_town_hall(self.debate)
        self._start_debate(self.debate)

    def _remember_theme(self, theme: Any) -> None:
        self.config.theme = theme.name
        if self.save_settings:
            try:
                save_config(self.config)
            except OSError as exc:
                self.notify(f"Could not save the theme choice: {exc}", severity="warning", markup=False)

    def _show_town_hall(self, debate: Debate) -> None:
        header = self.header
        header.motion = debate.spec.motion
        header.max_turns = debate.spec.max_turns
        header.turn = 0
        self.call_next(self._set_members, list(debate.personas))

    async def _set_members(self, personas: list[Persona]) -> None:
        """Roster in speaking order; colours follow the persona file, else the palette."""
        self._members = {
            p.name: Member(p.name, p.title, speaker_colour(p.color, i), p.emoji or "", p.moderator)
            for i, p in enumerate(personas)
        }
        await self.roster.set_members(list(self._members.values()))
        self.stats.set_talk(list(self._members.values()))

    # -- running a debate ----------------------------------------------------
    def _start_debate(self, debate: Debate) -> None:
        self.debate = debate
        self.state = "loading"
        self.end_reason = None
        self._turns_this_run = 0
        header = self.header
        header.state = "loading"
        if self._spinner is None:
            self._spinner = self.set_interval(0.1, self._spin)
        self._boot(debate)

    def _spin(self) -> None:
        self.header.spinner += 1

    @work(exclusive=True, group="debate", exit_on_error=False)
    async def _boot(self, debate: Debate) -> None:
        """Load the model in the background, then run the scheduler until it ends."""
        try:
            if debate.engine_config is not None and debate.engine_config != self.engine_config:
                await self._close_engine()
                self.engine_config = debate.engine_config
            if self.engine is None:
                assert self.engine_factory is not None
                self.engine = self.engine_factory(self.engine_config)
                self._owns_engine = True
            await self.engine.start()
        except TownhallError as exc:
            self.post_message(EngineFailed("The model could not be started", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - any load failure must end in the dialog
            self.post_message(EngineFailed("The model could not be started", f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(EngineReady(self.engine.info))
        try:
            scheduler = self.scheduler_factory(
                self.engine,
                debate.spec,
                list(debate.personas),
                bus=EventBus(),
                session_id=debate.session_id,
                history=tuple(debate.history),
                clock=self.clock,
            )
        except TownhallError as exc:
            self.post_message(EngineFailed("The town hall could not start", str(exc)))
            return
        self.scheduler = scheduler
        self.session_id = scheduler.session_id
        self.call_next(self._set_members, list(scheduler.participants))
        if self.store is not None:
            self._unsubscribe.append(self.store.attach(scheduler))
        self._unsubscribe.append(scheduler.subscribe(self._on_scheduler_event))
        if debate.history:
            self.call_next(self._show_history, list(debate.history))
        self._run_task = asyncio.ensure_future(scheduler.run())
        try:
            reason = await asyncio.shield(self._run_task)
        except asyncio.CancelledError:
            raise
        except TownhallError as exc:
            self._flush_tokens()
            self.post_message(DebateFinished(scheduler.session_id, "error", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the app stays usable after a scheduler bug
            self._flush_tokens()
            self.post_message(DebateFinished(scheduler.session_id, "error", f"{type(exc).__name__}: {exc}"))
            return
        self._flush_tokens()
        self.post_message(DebateFinished(scheduler.session_id, reason))

    async def _show_history(self, turns: list[Turn]) -> None:
        transcript = self.transcript
        for turn in turns:
            colour, emoji = self._look(turn.speaker, turn.kind)
            transcript.call_later(transcript.finish_turn, turn, colour, emoji)
            self._count_turn(turn)

    async def _stop_debate(self) -> None:
        """End the running debate so the store settles its last turn, then detach."""
        scheduler, task = self.scheduler, self._run_task
        if scheduler is not None and task is not None and not task.done():
            scheduler.stop()
            scheduler.interrupt()
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - we are leaving anyway
                task.cancel()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self._flush_tokens()
        self.scheduler = None
        self._run_task = None

    async def _close_engine(self) -> None:
        if self.engine is not None and self._owns_engine:
            await self.engine.aclose()
            self.engine = None

    async def on_unmount(self) -> None:
        """However the app ends, end the debate first so the record is settled."""
        await self._stop_debate()
        await self._close_engine()

    async def action_quit(self) -> None:
        await self._stop_debate()
        self.workers.cancel_group(self, "debate")
        await self._close_engine()
        self.exit()

    # -- events in -----------------------------------------------------------
    def _on_scheduler_event(self, event: Event) -> None:
        """Called on this loop by the scheduler; tokens are batched, the rest forwarded in order."""
        if isinstance(event, TokenStreamed):
            pending = self._pending
            if pending is not None and (pending.index, pending.session_id) != (event.index, event.session_id):
                self._flush_tokens()
                pending = None
            if pending is None:
                self._pending = _PendingTokens(event.session_id, event.index, event.speaker)
            assert self._pending is not None
            self._pending.parts.append(event.text)
            if self._flush_timer is None:
                self._flush_timer = self.set_timer(FRAME_S, self._flush_tokens)
            return
        self._flush_tokens()
        self.post_message(DebateEvent(event))

    def _flush_tokens(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        pending, self._pending = self._pending, None
        if pending is not None and pending.parts:
            self.post_message(
                TokensArrived(pending.session_id, pending.index, pending.speaker, "".join(pending.parts), len(pending.parts))
            )

    def on_engine_ready(self, message: EngineReady) -> None:
        header = self.header
        header.model_name = message.info.model_name
        header.device = message.info.device
        self._set_state("starting")

    def on_engine_failed(self, message: EngineFailed) -> None:
        self._set_state("error")
        self.push_screen(ErrorScreen(message.title, message.text))

    def on_debate_finished(self, message: DebateFinished) -> None:
        if not self._live or message.session_id != self.session_id:
            return  # a replaced debate finishing late must not mark the new one finished
        self.end_reason = message.reason
        if message.error:
            self._set_state("error")
            self.push_screen(ErrorScreen("The debate stopped with an error", message.error))
        elif message.reason != "error":
            self._set_state("finished")
        self.roster.set_roles(None, None)

    @property
    def _live(self) -> bool:
        """False once the app is shutting down and the main widgets are gone."""
        return self.transcript.is_attached

    async def on_tokens_arrived(self, message: TokensArrived) -> None:
        if not self._live or message.session_id != self.session_id:
            return
        # Drawing happens in the transcript's own queue, so the app's queue (keys,
        # bindings) never waits on Markdown parsing or mounting.
        self.transcript.call_later(self.transcript.append, message.index, message.text)
        self._turn_pieces += message.pieces
        elapsed = time.perf_counter() - self._turn_started
        if elapsed > 0:
            self.stats.set_current_tps(self._turn_pieces / elapsed)

    async def on_debate_event(self, message: DebateEvent) -> None:
        event = message.event
        if not self._live or getattr(event, "session_id", self.session_id) != self.session_id:
            return
        if isinstance(event, SessionStarted):
            self._set_state("debating")
        elif isinstance(event, TurnStarted):
            await self._turn_started_event(event)
        elif isinstance(event, (TurnFinished, TurnFailed)):
            await self._turn_finished_event(event.turn)
            if isinstance(event, TurnFailed):
                self.notify(event.error, title=f"{event.turn.speaker}'s turn failed", severity="error", markup=False)
        elif isinstance(event, Paused):
            self._set_state("paused")
        elif isinstance(event, Resumed):
            self._set_state("debating")
        elif isinstance(event, StrategyApplied):
            self.notify(f"{event.agent}: {event.strategy} — {event.detail}", title="Context", markup=False)
        elif isinstance(event, SessionEnded):
            self.end_reason = event.reason
            if event.error:
                self._set_state("error")
                self.push_screen(ErrorScreen(f"The debate ended: {event.reason}", event.error))
            else:
                self._set_state("finished")

    async def _turn_started_event(self, event: TurnStarted) -> None:
        self._turn_pieces = 0
        self._turn_started = time.perf_counter()
        if event.kind in (TurnKind.AGENT, TurnKind.MODERATOR):
            self.header.turn = self._turns_this_run + 1
        colour, emoji = self._look(event.speaker, event.kind)
        self.transcript.call_later(self.transcript.start_turn, event.index, event.speaker, event.kind, colour, emoji)
        next_up = self.scheduler.next_speaker if self.scheduler is not None else None
        self.roster.set_roles(event.speaker, next_up)
        if self.state not in ("paused", "pausing"):
            self._set_state("debating")

    async def _turn_finished_event(self, turn: Turn) -> None:
        colour, emoji = self._look(turn.speaker, turn.kind)
        self.transcript.call_later(self.transcript.finish_turn, turn, colour, emoji)
        self._count_turn(turn)
        if turn.kind in (TurnKind.AGENT, TurnKind.MODERATOR) and turn.error != SKIPPED:
            self._turns_this_run += 1
            self.header.turn = self._turns_this_run
        if turn.stats is not None:
            self.stats.add_turn(turn.stats.total_ms, turn.stats.reused_tokens, turn.stats.decode_tps)
        next_up = self.scheduler.next_speaker if self.scheduler is not None else None
        self.roster.set_roles(None, next_up)

    def _count_turn(self, turn: Turn) -> None:
        member = self._members.get(turn.speaker)
        if member is None:
            return
        if turn.error != SKIPPED:
            member.turns += 1
        member.words += len(turn.content.split())
        if turn.finished_at is not None and turn.started_at:
            member.talk_s += max(0.0, turn.finished_at - turn.started_at)
        if self.engine is not None:
            member.kv_tokens = self.engine.state_tokens(turn.speaker)
        self.roster.refresh_entries()
        self.stats.set_talk(list(self._members.values()))

    def _look(self, speaker: str, kind: TurnKind) -> tuple[str, str]:
        member = self._members.get(speaker)
        if member is not None:
            return member.colour, member.emoji
        if kind is TurnKind.SUMMARY:
            return SUMMARY_COLOUR, "📝"
        return AUDIENCE_COLOUR, "🙋"

    def _set_state(self, state: str) -> None:
        self.state = state
        header = self.header
        header.state = state
        if state != "loading" and self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    # -- actions -------------------------------------------------------------
    def _need_scheduler(self) -> SchedulerLike | None:
        if self.scheduler is None or self.state in ("finished", "error"):
            what = "is still loading" if self.state in ("loading", "starting") else "is not running"
            self.notify(f"The debate {what}.", severity="warning")
            return None
        return self.scheduler

    def action_toggle_pause(self) -> None:
        if (scheduler := self._need_scheduler()) is None:
            return
        # The scheduler pauses between turns; say so at once rather than after the turn.
        if scheduler.status == "paused" or self.state == "pausing":
            scheduler.resume()
            self._set_state("debating")
        else:
            scheduler.pause()
            self._set_state("pausing" if scheduler.status == "running" else "paused")

    def action_step(self) -> None:
        if (scheduler := self._need_scheduler()) is not None:
            scheduler.step()

    def action_interrupt(self) -> None:
        if (scheduler := self._need_scheduler()) is not None:
            scheduler.interrupt()

    def action_skip(self) -> None:
        if (scheduler := self._need_scheduler()) is not None:
            scheduler.skip()
            self.notify("Skipping the speaker.", timeout=2)

    def action_interject(self) -> None:
        self.interject_box.focus()

    @on(InterjectBox.Submitted)
    def _interjected(self, message: InterjectBox.Submitted) -> None:
        if (scheduler := self._need_scheduler()) is None:
            message.box.text = message.text  # keep what the user wrote
            return
        try:
            scheduler.interject(message.text)
        except TownhallError as exc:
            message.box.text = message.text
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify("Interjection queued: it is the next turn.", timeout=3)

    def action_toggle_stats(self) -> None:
        position = "bottom" if self.config.stats_position == "right" else "right"
        self._apply_stats_position(position)
        self.config.stats_position = position
        if self.save_settings:
            try:
                save_config(self.config)
            except OSError:
                pass

    def _apply_stats_position(self, position: str) -> None:
        body = self.body
        body.set_class(position == "right", "-stats-right")
        body.set_class(position == "bottom", "-stats-bottom")

    def action_export(self) -> None:
        if self.store is None or self.session_id is None:
            self.notify("Nothing to export: no database or no session yet.", severity="warning")
            return
        try:
            path = export_to_file(self.store, self.session_id, "md", self.exports_dir)
        except (TownhallError, OSError) as exc:
            self.push_screen(ErrorScreen("Export failed", str(exc)))
            return
        self.notify(f"Exported to {path}", title="Export", markup=False, timeout=6)

    def action_new_townhall(self) -> None:
        from townhall.tui.screens.new_townhall import NewTownhallScreen

        self.push_screen(
            NewTownhallScreen(self.available_personas, self.debate.spec, self.engine_config.model),
            self._new_townhall_chosen,
        )

    async def _new_townhall_chosen(self, debate: Debate | None) -> None:
        if debate is None:
            return
        if debate.engine_config is not None and self.engine_factory is None:
            self.push_screen(ErrorScreen("Cannot change the model", "This window was opened with a fixed engine; start `townhall tui --model PATH` instead."))
            return
        if debate.engine_config is not None:
            debate.engine_config = self.engine_config.model_copy(update={"model": debate.engine_config.model})
        await self._replace_debate(debate)

    async def _replace_debate(self, debate: Debate) -> None:
        await self._stop_debate()
        await self.transcript.clear()
        self.stats.latencies.clear()
        self._show_town_hall(debate)
        self._start_debate(debate)

    def action_sessions(self) -> None:
        if self.store is None:
            self.notify("No database is open.", severity="warning")
            return
        from townhall.tui.screens.sessions import SessionsScreen

        self.push_screen(SessionsScreen(self.store, self.exports_dir, current=self.session_id), self._session_chosen)

    async def _session_chosen(self, session_id: str | None) -> None:
        if session_id is None or self.store is None:
            return
        try:
            spec, personas, turns = self.store.load_for_resume(session_id)
        except TownhallError as exc:
            self.push_screen(ErrorScreen("Cannot resume that session", str(exc)))
            return
        await self._replace_debate(Debate(spec, list(personas), session_id=session_id, history=list(turns)))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Debate keys act on the main screen only: hidden from other screens' footers."""
        if action in _DEBATE_ACTIONS and len(self.screen_stack) > 1 and not isinstance(self.screen, _PALETTE):
            return False
        return True

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action in ACTIONS:
            if action.id == "townhall.theme":
                continue  # Textual already lists "Theme"
            yield SystemCommand(action.label, action.help, self._runner(action.action))

    def _runner(self, action: str) -> Callable[[], Any]:
        async def run() -> None:
            await self.run_action(action)

        return run


def known_binding_ids() -> set[str]:
    """Every binding id a user may remap, across the app, its screens and widgets."""
    from townhall.tui.screens.new_townhall import NewTownhallScreen
    from townhall.tui.screens.sessions import ConfirmScreen, ReplayScreen, SessionsScreen

    owners: list[Any] = [TownhallApp, InterjectBox, ErrorScreen, NewTownhallScreen, SessionsScreen, ReplayScreen, ConfirmScreen]
    return {b.id for owner in owners for b in owner.BINDINGS if isinstance(b, Binding) and b.id}
