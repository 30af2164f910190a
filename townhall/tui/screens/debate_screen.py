"""The debate screen: watch one town hall, steer it, and see who speaks and what it costs.

It holds the widgets and draws the debate's state, which lives in a Textual-free
view-model (`townhall.tui.view_model`): the screen copies that state into its reactives
and their watchers update the widgets. It runs each session through the shared runner
(`townhall.debate.session.Session`); the scheduler's events come back as Textual messages,
tokens coalesced by a `TokenBatcher`. A branch key pressed after the debate ended reopens
the session (`session.plan_branch_op`) with the operation queued on the new scheduler,
which applies it before anything else. Below `NARROW_BELOW` columns the transcript gets
the room: the roster shrinks to a name column and the stats pane hides unless asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import CommandPalette
from textual.containers import Container
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Input, TextArea

from townhall.debate.reading_pace import ReadingPace
from townhall.debate.session import BranchKeyOp, Feed, SchedulerFactory, Session, SessionPlan, SessionScheduler
from townhall.domain.events import Event, OutcomeDecided, TokenStreamed, TurnStarted
from townhall.domain.personas import Persona
from townhall.domain.turns import Turn
from townhall.engine.factory import EngineConfig
from townhall.errors import TownhallError
from townhall.tui.batcher import TokenBatcher
from townhall.tui.bindings import DEBATE_ACTIONS
from townhall.tui.branch_keys import BranchKeys, Reopen
from townhall.tui.engine_holder import EngineHolder
from townhall.tui.exports import export_to_file
from townhall.tui.screens.record_error import RecordErrorScreen
from townhall.tui.messages import DebateEvent, DebateFinished, EngineFailed, EngineReady, ShowError, TokensArrived
from townhall.tui.view_model import (
    STATS_CYCLE,
    DebateState,
    DebateViewModel,
    Look,
    Member,
    Severity,
    StatsPosition,
    TurnMark,
    next_stats_position,
)
from townhall.tui.widgets.footer import DebateFooter
from townhall.tui.widgets.header import TownhallHeader
from townhall.tui.widgets.interject import InterjectBox
from townhall.tui.widgets.outcome import OutcomeBanner
from townhall.tui.widgets.roster import Roster
from townhall.tui.widgets.stats import StatsPanel
from townhall.tui.widgets.transcript import Transcript, TurnView

if TYPE_CHECKING:
    from townhall.store import Store

NARROW_BELOW = 100  # columns: under this, a 34-column roster and a 36-column stats pane leave no room to read
COMPACT_FOOTER_BELOW = 140  # columns: below this the footer's keys, Quit included, fit only without spacing
# Branch keys that must reach a text box instead while one has focus.
SELECTION_ACTIONS = frozenset({"select_prev", "select_next", "prev_alternative", "next_alternative", "clear_selection"})


class DebateScreen(Screen[None]):
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [a.binding() for a in DEBATE_ACTIONS]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]
    STEERING: ClassVar[bool] = True  # the interjection box; a watcher of another process's debate has none

    # The view-model's state as drawn; `show_state` copies it in, the watchers draw what changed.
    state: var[DebateState] = var("loading", bindings=True)
    turn: var[int] = var(0)
    branch: var[str] = var("")
    speaking: var[str | None] = var(None)
    next_up: var[str | None] = var(None)
    outcome: var[OutcomeDecided | None] = var(None, bindings=True)
    minutes: var[str | None] = var(None, bindings=True)
    vote_called: var[bool] = var(False, bindings=True)
    probing: var[bool] = var(True, bindings=True)
    revision: var[int] = var(0)  # the members' counts or stances changed
    stats_position: var[StatsPosition] = var("right")  # where the user put the stats pane
    pace: var[str] = var("")  # the reading pace, and the hold under way

    @dataclass
    class StatsMoved(Message):
        """The user moved the stats pane; the app remembers it."""

        position: StatsPosition

    def __init__(
        self,
        debate: SessionPlan,
        engines: EngineHolder,
        *,
        store: Store | None = None,
        stats_position: StatsPosition = "right",
        scheduler_factory: SchedulerFactory | None = None,
        clock: Callable[[], float] = time.time,
        exports_dir: Path,
        feeds: Sequence[Feed] = (),
        pace: ReadingPace | None = None,  # the reading pace every run here is handed (None: flat out)
    ) -> None:
        super().__init__(id="debate")
        self.feeds = list(feeds)  # other ways in for interjections (`--interject-file`), for every session
        self.debate = debate
        self.engines = engines
        self.store = store
        self.set_reactive(DebateScreen.stats_position, stats_position)
        self.scheduler_factory = scheduler_factory
        self.clock = clock
        self.exports_dir = exports_dir
        self.session: Session | None = None
        self.model = DebateViewModel(self, store=store, pace=pace)
        self.model.pace.subscribe(lambda: self.call_later(self.model.pace_changed))  # in this screen's queue
        self.keys = BranchKeys(self.model, lambda: self.scheduler,
                               lambda: self.session is not None and self.session.running)
        self.batcher = TokenBatcher(self.post_message, self.set_timer)
        # Held, not queried: a query from outside runs against whichever screen is on top.
        self.header = TownhallHeader(id="header")
        self.banner = OutcomeBanner(id="outcome")
        self.body = Container(id="body")
        self.roster = Roster(id="roster")
        self.transcript = Transcript(id="transcript")
        self.stats = StatsPanel(id="stats")
        self.interject_box = InterjectBox(id="interject")
        self.footer = DebateFooter()

    @property
    def scheduler(self) -> SessionScheduler | None:
        return self.session.scheduler if self.session is not None else None

    @property
    def session_id(self) -> str | None:
        return self.model.session_id

    @property
    def _members(self) -> dict[str, Member]:
        return self.model.members

    @property
    def narrow(self) -> bool:
        return self.has_class("-narrow")

    # -- setup ---------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield self.header.data_bind(DebateScreen.state, DebateScreen.turn, DebateScreen.branch, DebateScreen.pace)
        yield self.banner
        with self.body:
            yield self.roster
            yield self.transcript
            yield self.stats
            if self.STEERING:
                yield self.interject_box
        yield self.footer

    def on_resize(self, event: events.Resize) -> None:
        """The breakpoint classes move the panes (app.tcss); the footer tightens its spacing too."""
        self.footer.compact = event.size.width < COMPACT_FOOTER_BELOW
        self.footer.room = event.size.width if self.footer.compact else 0

    def on_mount(self) -> None:
        self.watch_stats_position(self.stats_position)  # set before mount, so not watched yet
        self.transcript.focus()
        self._show_town_hall(self.debate)
        self._start_debate(self.debate)

    def _show_town_hall(self, plan: SessionPlan) -> None:
        self.header.motion = plan.spec.motion
        self.header.max_turns = plan.spec.max_turns
        self.call_next(self._show_members, list(plan.personas))

    async def _show_members(self, personas: list[Persona]) -> None:
        self.model.set_members(personas, self.debate.spec.moderator)
        await self.roster.set_members(list(self.model.members.values()))
        self.watch_revision()

    # -- the view-model's state, drawn -----------------------------------------
    def show_state(self, model: DebateViewModel) -> None:
        """`DebateView.show_state`: take the model's state; each reactive's watcher draws its change."""
        self.probing, self.revision = model.probing, model.revision
        self.speaking, self.next_up = model.speaking, model.next_up
        self.turn, self.branch, self.pace = model.turn, model.branch, model.pace_status
        self.outcome, self.minutes, self.vote_called = model.outcome, model.minutes, model.vote_called
        self.state = model.state

    def watch_speaking(self) -> None:
        self.roster.set_roles(self.speaking, self.next_up)

    watch_next_up = watch_speaking

    def watch_probing(self, probing: bool) -> None:
        self.roster.probing = probing
        self.roster.refresh_entries()

    def watch_revision(self) -> None:
        members = list(self.model.members.values())
        self.roster.refresh_entries()
        self.stats.set_talk(members)
        self.stats.set_stances(members)

    def watch_outcome(self) -> None:
        self.banner.show(self.outcome, self.minutes is not None, self.vote_called)

    watch_minutes = watch_vote_called = watch_outcome

    # -- DebateView: what the view-model asks to draw ------------------------------
    def start_turn(self, event: TurnStarted, look: Look) -> None:
        transcript = self.transcript
        transcript.call_later(transcript.start_turn, event.index, event.speaker, event.kind, *look, event.node)

    def finish_turn(self, turn: Turn, look: Look) -> None:
        self.transcript.call_later(self.transcript.finish_turn, turn, *look)

    def redraw_from(self, index: int, turns: list[Turn]) -> None:
        self.transcript.call_later(self.transcript.redraw_from, index, turns, self._look)

    def _look(self, turn: Turn) -> Look:
        return self.model.look(turn.speaker, turn.kind)

    def show_marks(self, marks: dict[str, TurnMark]) -> None:
        self.transcript.call_later(self.transcript.set_marks, marks)

    def show_turn_stats(self, turn: Turn) -> None:
        if turn.stats is not None:
            self.stats.add_turn(turn.stats.total_ms, turn.stats.reused_tokens, turn.stats.decode_tps)
        else:
            self.stats.set_current_tps(0.0)  # a line said at once (the moderator's) has no speed to show

    def say(self, text: str, *, title: str = "", severity: Severity = "information", timeout: float | None = None,
            markup: bool = True) -> None:
        self.notify(text, title=title, severity=severity, timeout=timeout, markup=markup)

    def show_error(self, title: str, text: str) -> None:
        self.post_message(ShowError(title, text))

    def show_record_error(self, session_id: str, text: str) -> None:
        """The record failed mid-run: the dialog to retry or save elsewhere (the transcript stays)."""
        if self.store is None:
            self.show_error("The record cannot be written", text)
            return
        self.app.push_screen(RecordErrorScreen.for_session(self.store, session_id, text, self.exports_dir))

    # -- running a debate ----------------------------------------------------
    def _start_debate(self, plan: SessionPlan, reopened_for: BranchKeyOp | None = None,
                      engine_config: EngineConfig | None = None) -> None:
        """Run `plan`; `reopened_for`: the branch op a reopened session applies first."""
        self.debate = plan
        self.model.start_run(reopened=reopened_for is not None)
        self._boot(plan, reopened_for, engine_config)

    @work(exclusive=True, group="debate", exit_on_error=False)
    async def _boot(self, plan: SessionPlan, reopened_for: BranchKeyOp | None,
                    engine_config: EngineConfig | None) -> None:
        """Load the model in the background, then run the session until it ends."""
        try:
            engine = await self.engines.ready(engine_config)
        except Exception as exc:  # noqa: BLE001 - any load failure must end in the dialog
            text = str(exc) if isinstance(exc, TownhallError) else f"{type(exc).__name__}: {exc}"
            self.post_message(EngineFailed("The model could not be started", text))
            return
        self.post_message(EngineReady(engine.info))
        try:
            session = Session(engine, plan, store=self.store, views=[self._on_scheduler_event], clock=self.clock,
                              scheduler_factory=self.scheduler_factory, feeds=self.feeds, pace=self.model.pace)
        except TownhallError as exc:
            self.post_message(EngineFailed("The town hall could not start", str(exc)))
            return
        self.session = session
        self.model.attach(session.scheduler, engine)
        self.call_next(self._show_members, list(session.scheduler.participants))
        if reopened_for is not None:
            # Drawn already: the path is recounted, and BranchSwitched redraws what changes.
            self.call_next(self.model.recount, list(plan.history))
            try:
                reopened_for(session.scheduler)
            except TownhallError as exc:
                await session.end()
                self.post_message(ShowError("That turn cannot be changed", str(exc)))
                self.post_message(DebateFinished(session.session_id, "stopped"))
                return
        elif plan.history:
            self.call_next(self._show_history, list(plan.history))
        result = await session.run_shielded()
        self.batcher.flush()
        self.post_message(DebateFinished(session.session_id, result.reason, result.unpublished_error))

    def _show_history(self, turns: list[Turn]) -> None:
        self.model.show_history(turns)
        self.call_later(self.model.refresh_marks)

    async def stop_debate(self) -> None:
        """End the running debate so the store settles its last turn, then detach."""
        if self.session is not None:
            await self.session.end()
            self.session = None
        self.batcher.flush()

    async def continue_debate(self, plan: SessionPlan, reopened_for: BranchKeyOp) -> None:
        """Go on with the session on screen (its turns stay drawn) to apply a branch key."""
        await self.stop_debate()
        self.transcript.select(self.transcript.selected)
        self._start_debate(plan, reopened_for)

    async def replace_debate(self, plan: SessionPlan, engine_config: EngineConfig | None = None) -> None:
        await self.stop_debate()
        await self.transcript.clear()
        self.stats.latencies.clear()
        self._show_town_hall(plan)
        self._start_debate(plan, engine_config=engine_config)

    # -- events in -----------------------------------------------------------
    def _on_scheduler_event(self, event: Event) -> None:
        """Called on this loop by the scheduler; tokens are batched, the rest forwarded in order."""
        if isinstance(event, TokenStreamed):
            self.batcher.add(event)
            return
        self.batcher.flush()
        self.post_message(DebateEvent(event))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.header.show_engine(message.info)
        self.model.engine_ready(message.info.stance_probe, self.debate.spec.ballot)

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.model.failed()
        self.post_message(ShowError(message.title, message.text))

    def on_debate_finished(self, message: DebateFinished) -> None:
        if self._live:  # not once the app is shutting down and the widgets are gone
            self.model.finished(message.session_id, message.reason, message.error)

    @property
    def _live(self) -> bool:
        return self.transcript.is_attached

    async def on_tokens_arrived(self, message: TokensArrived) -> None:
        if not self._live or message.session_id != self.session_id:
            return
        # Drawing happens in the transcript's own queue, so this screen's queue (keys,
        # bindings) never waits on Markdown parsing or mounting.
        self.transcript.call_later(self.transcript.append, message.index, message.text)
        if (tps := self.model.tokens(message.pieces)) is not None:
            self.stats.set_current_tps(tps)

    async def on_debate_event(self, message: DebateEvent) -> None:
        if self._live:
            self.model.handle(message.event)

    # -- actions -------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Debate keys act while this screen is on top (or the palette over it): a dialog
        over the debate keeps them out of the footer drawn beneath it."""
        top = self.app.screen
        if not (top is self or isinstance(top, CommandPalette)):
            return False
        if action in SELECTION_ACTIONS and isinstance(self.app.focused, (Input, TextArea)):
            return False  # the arrows (priority keys) move the cursor in the interjection box
        # Shown dimmed in the footer until they can act.
        if action == "show_minutes" and self.minutes is None:
            return None
        if action == "call_vote" and not self.model.can_call_vote():
            return None
        return True

    def action_toggle_pause(self) -> None:
        self.model.toggle_pause()

    def action_step(self) -> None:
        self.model.step()

    def action_interrupt(self) -> None:
        self.model.interrupt()

    def action_skip(self) -> None:
        self.model.skip()

    def action_pace(self, step: int) -> None:
        self.model.change_pace(step)

    def action_interject(self) -> None:
        self.interject_box.focus()

    @on(InterjectBox.Submitted)
    def _interjected(self, message: InterjectBox.Submitted) -> None:
        if not self.model.interject(message.text):
            message.box.text = message.text  # keep what the user wrote

    def action_show_tally(self) -> None:
        from townhall.tui.screens.tally import TallyScreen

        can_vote = self.check_action("call_vote", ()) is True
        tally = TallyScreen(list(self.model.members.values()), self.outcome, can_vote=can_vote, probing=self.probing)
        self.app.push_screen(tally, lambda vote: self.action_call_vote() if vote else None)

    def action_call_vote(self) -> None:
        self.model.call_vote()

    def action_show_minutes(self) -> None:
        if self.minutes is None:
            self.notify("No minutes yet: they are written after the closing ballot.", severity="warning")
            return
        from townhall.tui.screens.minutes import MinutesScreen

        self.app.push_screen(MinutesScreen(f"Minutes — {self.debate.spec.motion}", self.minutes))

    def action_toggle_stats(self) -> None:
        self.stats_position = next_stats_position(self.stats_position, self.narrow)
        self.post_message(self.StatsMoved(self.stats_position))

    def watch_stats_position(self, position: StatsPosition) -> None:
        for name in STATS_CYCLE:
            self.body.set_class(position == name, f"-stats-{name}")

    def action_export(self) -> None:
        if self.store is None or self.session_id is None:
            self.notify("Nothing to export: no database or no session yet.", severity="warning")
            return
        try:
            path = export_to_file(self.store, self.session_id, "md", self.exports_dir)
        except (TownhallError, OSError) as exc:
            self.post_message(ShowError("Export failed", str(exc)))
            return
        self.notify(f"Exported to {path}", title="Export", markup=False, timeout=6)

    # -- branches --------------------------------------------------------------
    def action_select_prev(self) -> None:
        self.transcript.move_selection(-1)

    def action_select_next(self) -> None:
        self.transcript.move_selection(+1)

    def action_clear_selection(self) -> None:
        self.transcript.select(None)

    @on(TurnView.Clicked)
    def _turn_clicked(self, message: TurnView.Clicked) -> None:
        self.transcript.select(message.index)

    def action_prev_alternative(self) -> None:
        self._reopen(self.keys.alternative(self.transcript.target(), -1, self.transcript.alternatives_shown))

    def action_next_alternative(self) -> None:
        self._reopen(self.keys.alternative(self.transcript.target(), +1, self.transcript.alternatives_shown))

    def action_regenerate(self) -> None:
        self._reopen(self.keys.regenerate(self.transcript.target()))

    def action_fork(self) -> None:
        self._reopen(self.keys.fork(self.transcript.target()))

    def action_edit_turn(self) -> None:
        if (turn := self.keys.target(self.transcript.target())) is None:
            return
        from townhall.tui.screens.edit_turn import EditTurnScreen

        index, original = turn.index, turn.content
        dialog = EditTurnScreen(f"Edit turn #{index} — {turn.speaker}", original)
        self.app.push_screen(dialog, lambda text: self._reopen(self.keys.edit(index, text, original)))

    def _reopen(self, reopen: Reopen | None) -> None:
        """A branch key after the end: run the stored session again with the op queued first."""
        if reopen is not None:
            self.call_next(self.continue_debate, reopen.plan, reopen.op)
