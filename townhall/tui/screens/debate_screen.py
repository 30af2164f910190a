"""The debate screen: watch one town hall, steer it, and see who speaks and what it costs.

It holds the widgets and the debate actions (pause, step, interrupt, skip, interject,
export, stats pane, the tally, calling the vote, the minutes, and the branch keys:
select a turn, regenerate, edit, fork, flip between alternatives). The engine and the store
come in from the app; the scheduler comes from `open_session`, and its events come back
as Textual messages on this screen, tokens coalesced by a `TokenBatcher`. A branch key
pressed after the debate ended resumes the session (`session.plan_resume`) with the
operation queued on the new scheduler, which applies it before anything else. Below `NARROW_BELOW` columns the transcript gets
the room: the roster shrinks to a name column and the stats pane hides unless asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import CommandPalette
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, TextArea

from townhall.debate.ballot import VOTE_PHASE
from townhall.errors import TownhallError
from townhall.domain.events import (
    BranchCreated,
    BranchSwitched,
    Event,
    MinutesWritten,
    OutcomeDecided,
    Paused,
    Resumed,
    SessionEnded,
    SessionStarted,
    StanceMeasured,
    StrategyApplied,
    TokenStreamed,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from townhall.domain.personas import Persona
from townhall.tui.batcher import TokenBatcher
from townhall.tui.bindings import DEBATE_ACTIONS
from townhall.tui.colours import AUDIENCE_COLOUR, SUMMARY_COLOUR, speaker_colour
from townhall.tui.debate import (
    BranchOp,
    Debate,
    DebateSession,
    SchedulerFactory,
    SchedulerLike,
    default_scheduler_factory,
    export_to_file,
    open_session,
)
from townhall.tui.engine_holder import EngineHolder
from townhall.tui.messages import (
    DebateEvent,
    DebateFinished,
    EngineFailed,
    EngineReady,
    ShowError,
    TokensArrived,
)
from townhall.tui.widgets.footer import DebateFooter
from townhall.tui.widgets.header import TownhallHeader
from townhall.tui.widgets.interject import InterjectBox
from townhall.tui.widgets.outcome import OutcomeBanner
from townhall.tui.widgets.roster import Member, Roster
from townhall.tui.widgets.stats import StatsPanel
from townhall.tui.widgets.transcript import Transcript, TurnMark, TurnView
from townhall.domain.turns import WATCHER, Turn, TurnKind, TurnStatus

if TYPE_CHECKING:
    from townhall.store import Store

StatsPosition = Literal["right", "bottom", "hidden"]
STATS_CYCLE: tuple[StatsPosition, ...] = ("right", "bottom", "hidden")
NARROW_BELOW = 100  # columns: under this, a 34-column roster and a 36-column stats pane leave no room to read
COMPACT_FOOTER_BELOW = 140  # columns: below this the footer's keys, Quit included, fit only without spacing
# Branch keys that must reach a text box instead while one has focus.
SELECTION_ACTIONS = frozenset({"select_prev", "select_next", "prev_alternative", "next_alternative", "clear_selection"})
DebateState = Literal["loading", "starting", "debating", "pausing", "paused", "finished", "error"]


def counts_as_debate_turn(turn: Turn) -> bool:
    """What "turn i of N" counts: a persona or the chair spoke (the announcement of the vote is no debate turn)."""
    return turn.kind in (TurnKind.AGENT, TurnKind.MODERATOR) and turn.status != TurnStatus.SKIPPED and turn.phase != VOTE_PHASE


class DebateScreen(Screen[None]):
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [a.binding() for a in DEBATE_ACTIONS]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]

    @dataclass
    class StatsMoved(Message):
        """The user moved the stats pane; the app remembers it."""

        position: StatsPosition

    def __init__(
        self,
        debate: Debate,
        engines: EngineHolder,
        *,
        store: Store | None = None,
        stats_position: StatsPosition = "right",
        scheduler_factory: SchedulerFactory = default_scheduler_factory,
        clock: Callable[[], float] = time.time,
        exports_dir: Path,
    ) -> None:
        super().__init__(id="debate")
        self.debate = debate
        self.engines = engines
        self.store = store
        self.stats_position: StatsPosition = stats_position
        self.scheduler_factory = scheduler_factory
        self.clock = clock
        self.exports_dir = exports_dir
        self.session: DebateSession | None = None
        self.session_id: str | None = None
        self.state: DebateState = "loading"
        self.end_reason: str | None = None
        self.batcher = TokenBatcher(self.post_message, self.set_timer)
        self._turn_pieces = 0
        self._turn_started = 0.0
        self._turns_this_run = 0  # what "turn i of N" counts: the scheduler's max_turns ignores history
        self._made: set[str] = set()  # this session's turns said while on screen: a branch switch recounts them
        self._spinner: object | None = None
        self._members: dict[str, Member] = {}
        self.outcome: OutcomeDecided | None = None
        self.minutes: str | None = None
        self.vote_called = False
        self.probing = True  # known once the engine is ready: a probe, and a town hall that votes
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
    def scheduler(self) -> SchedulerLike | None:
        return self.session.scheduler if self.session is not None else None

    @property
    def narrow(self) -> bool:
        return self.has_class("-narrow")

    # -- setup ---------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield self.header
        yield self.banner
        with self.body:
            yield self.roster
            yield self.transcript
            yield self.stats
            yield self.interject_box
        yield self.footer

    def on_resize(self, event: events.Resize) -> None:
        """The breakpoint classes move the panes (app.tcss); the footer tightens its spacing too."""
        self.footer.compact = event.size.width < COMPACT_FOOTER_BELOW
        self.footer.room = event.size.width if self.footer.compact else 0

    def on_mount(self) -> None:
        self._apply_stats_position(self.stats_position)
        self.transcript.focus()
        self._show_town_hall(self.debate)
        self._start_debate(self.debate)

    def _show_town_hall(self, debate: Debate) -> None:
        self.header.motion = debate.spec.motion
        self.header.max_turns = debate.spec.max_turns
        self.header.turn = 0
        self.call_next(self._set_members, list(debate.personas))

    async def _set_members(self, personas: list[Persona]) -> None:
        """Roster in speaking order; colours follow the persona file, else the palette."""
        chair = (self.debate.spec.moderator or "").casefold()
        self._members = {
            p.name: Member(p.name, p.title, speaker_colour(p.color, i), p.emoji or "", p.moderator or p.name.casefold() == chair)
            for i, p in enumerate(personas)
        }
        await self.roster.set_members(list(self._members.values()))
        self.stats.set_talk(list(self._members.values()))
        self.stats.set_stances(list(self._members.values()))

    # -- running a debate ----------------------------------------------------
    def _start_debate(self, debate: Debate) -> None:
        if debate.then is None:
            self._made.clear()
        self.debate = debate
        self.end_reason = None
        self.outcome, self.minutes, self.vote_called = None, None, False
        self.banner.reset()
        self._turns_this_run = 0
        self._set_state("loading")
        if self._spinner is None:
            self._spinner = self.set_interval(0.1, self._spin)
        self._boot(debate)

    def _spin(self) -> None:
        self.header.spinner += 1

    @work(exclusive=True, group="debate", exit_on_error=False)
    async def _boot(self, debate: Debate) -> None:
        """Load the model in the background, then run the session until it ends."""
        try:
            engine = await self.engines.ready(debate.engine_config)
        except TownhallError as exc:
            self.post_message(EngineFailed("The model could not be started", str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - any load failure must end in the dialog
            self.post_message(EngineFailed("The model could not be started", f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(EngineReady(engine.info))
        try:
            session = open_session(
                engine,
                debate,
                store=self.store,
                listener=self._on_scheduler_event,
                clock=self.clock,
                scheduler_factory=self.scheduler_factory,
            )
        except TownhallError as exc:
            self.post_message(EngineFailed("The town hall could not start", str(exc)))
            return
        self.session, self.session_id = session, session.session_id
        self.call_next(self._set_members, list(session.scheduler.participants))
        if debate.then is not None:
            # Drawn already: the path is recounted, and BranchSwitched redraws what changes.
            self.call_next(self._recount, list(debate.history))
        elif debate.history:
            self.call_next(self._show_history, list(debate.history))
        if debate.then is not None:
            try:
                debate.then(session.scheduler)
            except TownhallError as exc:
                await session.stop()
                self.post_message(ShowError("That turn cannot be changed", str(exc)))
                self.post_message(DebateFinished(session.session_id, "stopped"))
                return
        reason = await session.run()
        self.batcher.flush()
        self.post_message(DebateFinished(session.session_id, reason, session.error))

    async def _show_history(self, turns: list[Turn]) -> None:
        for turn in turns:
            colour, emoji = self._look(turn.speaker, turn.kind)
            self.transcript.call_later(self.transcript.finish_turn, turn, colour, emoji)
            self._count_turn(turn)
        self._show_stored_stances()
        self.call_later(self._refresh_marks)

    def _recount(self, turns: list[Turn]) -> None:
        """The roster and stats for path `turns` (another branch: other speakers, other stances)."""
        for member in self._members.values():
            member.turns, member.words, member.talk_s = 0, 0, 0.0
            if self.store is not None:
                member.stances.clear()  # read again below, for the branch now current
        for turn in turns:
            self._count_turn(turn)
        self._turns_this_run = sum(1 for turn in turns if turn.node in self._made and counts_as_debate_turn(turn))
        self.header.turn = self._turns_this_run
        self._show_stored_stances()
        self.roster.refresh_entries()
        self.stats.set_talk(list(self._members.values()))

    def _show_stored_stances(self) -> None:
        """A resumed session's bars and chart go on from its recorded readings."""
        if self.store is None or self.session_id is None:
            return
        try:
            readings = self.store.stances_of(self.session_id)
        except TownhallError:
            return  # a session not yet in the record has no readings
        for reading in readings:
            member = self._members.get(reading.agent)
            if member is not None and not member.moderator:
                member.stances.append(reading.p_for)
        self.roster.refresh_entries()
        self.stats.set_stances(list(self._members.values()))

    async def stop_debate(self) -> None:
        """End the running debate so the store settles its last turn, then detach."""
        if self.session is not None:
            await self.session.stop()
            self.session = None
        self.batcher.flush()

    async def continue_debate(self, debate: Debate) -> None:
        """Go on with the session on screen (its turns stay drawn), e.g. to apply a branch key."""
        await self.stop_debate()
        self.transcript.select(self.transcript.selected)
        self._start_debate(debate)

    async def replace_debate(self, debate: Debate) -> None:
        await self.stop_debate()
        await self.transcript.clear()
        self.stats.latencies.clear()
        self._show_town_hall(debate)
        self._start_debate(debate)

    # -- events in -----------------------------------------------------------
    def _on_scheduler_event(self, event: Event) -> None:
        """Called on this loop by the scheduler; tokens are batched, the rest forwarded in order."""
        if isinstance(event, TokenStreamed):
            self.batcher.add(event)
            return
        self.batcher.flush()
        self.post_message(DebateEvent(event))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.header.model_name = message.info.model_name
        self.header.device = message.info.device
        self.header.stance_probe = message.info.stance_probe
        self.probing = message.info.stance_probe is not None and self.debate.spec.ballot
        self.roster.probing = self.probing
        self.roster.refresh_entries()
        self._set_state("starting")

    def on_engine_failed(self, message: EngineFailed) -> None:
        self._set_state("error")
        self.post_message(ShowError(message.title, message.text))

    def on_debate_finished(self, message: DebateFinished) -> None:
        if not self._live or message.session_id != self.session_id:
            return  # a replaced debate finishing late must not mark the new one finished
        self.end_reason = message.reason
        if message.error:
            self._set_state("error")
            self.post_message(ShowError("The debate stopped with an error", message.error))
        elif message.reason != "error":
            self._set_state("finished")
        self.roster.set_roles(None, None)

    @property
    def _live(self) -> bool:
        """False once the app is shutting down and the widgets are gone."""
        return self.transcript.is_attached

    async def on_tokens_arrived(self, message: TokensArrived) -> None:
        if not self._live or message.session_id != self.session_id:
            return
        # Drawing happens in the transcript's own queue, so this screen's queue (keys,
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
            self._turn_started_event(event)
        elif isinstance(event, (TurnFinished, TurnFailed)):
            self._turn_finished_event(event.turn)
            if isinstance(event, TurnFailed):
                self.notify(event.error, title=f"{event.turn.speaker}'s turn failed", severity="error", markup=False)
        elif isinstance(event, BranchSwitched):
            self._branch_switched(event)
        elif isinstance(event, BranchCreated):
            self._refresh_marks()
        elif isinstance(event, Paused):
            self._set_state("paused")
        elif isinstance(event, Resumed):
            self._set_state("debating")
        elif isinstance(event, StrategyApplied):
            self.notify(f"{event.agent}: {event.strategy} — {event.detail}", title="Context", markup=False)
        elif isinstance(event, StanceMeasured):
            self._stance_measured(event)
        elif isinstance(event, OutcomeDecided):
            self.outcome = event
            self.banner.show_outcome(event)
            self.refresh_bindings()
        elif isinstance(event, MinutesWritten):
            self.minutes = event.text
            self.banner.show_minutes_ready()
            self.refresh_bindings()
            self.notify("The minutes are written: press m to read them.", title="Minutes", markup=False)
        elif isinstance(event, SessionEnded):
            self.end_reason = event.reason
            if event.error:
                self._set_state("error")
                self.post_message(ShowError(f"The debate ended: {event.reason}", event.error))
            else:
                self._set_state("finished")

    def _turn_started_event(self, event: TurnStarted) -> None:
        self._turn_pieces = 0
        self._turn_started = time.perf_counter()
        if event.kind in (TurnKind.AGENT, TurnKind.MODERATOR) and event.phase != VOTE_PHASE:
            self.header.turn = self._turns_this_run + 1
        colour, emoji = self._look(event.speaker, event.kind)
        self.transcript.call_later(
            self.transcript.start_turn, event.index, event.speaker, event.kind, colour, emoji, event.node
        )
        self._refresh_marks()
        next_up = self.scheduler.next_speaker if self.scheduler is not None else None
        self.roster.set_roles(event.speaker, next_up)
        if self.state not in ("paused", "pausing"):
            self._set_state("debating")

    def _turn_finished_event(self, turn: Turn) -> None:
        colour, emoji = self._look(turn.speaker, turn.kind)
        self.transcript.call_later(self.transcript.finish_turn, turn, colour, emoji)
        self._count_turn(turn)
        if counts_as_debate_turn(turn):
            self._made.add(turn.node)
            self._turns_this_run += 1
            self.header.turn = self._turns_this_run
        if turn.stats is not None:
            self.stats.add_turn(turn.stats.total_ms, turn.stats.reused_tokens, turn.stats.decode_tps)
        else:
            self.stats.set_current_tps(0.0)  # a line said at once (the moderator's) has no speed to show
        next_up = self.scheduler.next_speaker if self.scheduler is not None else None
        self.roster.set_roles(None, next_up)
        self._refresh_marks()

    def _branch_switched(self, event: BranchSwitched) -> None:
        """Another path: redraw from its first difference, recount the roster and the stats."""
        turns = list(event.turns)
        self.transcript.call_later(self.transcript.redraw_from, event.from_index, turns, self._turn_look)
        self._recount(turns)
        self._refresh_marks()
        self._show_stored_outcome()

    def _show_stored_outcome(self) -> None:
        """The banner for the branch now current: its recorded ballot, or none."""
        if self.store is None or self.session_id is None:
            return
        try:
            stored = self.store.outcome_of(self.session_id)
        except TownhallError:
            return
        self.banner.reset()
        self.outcome, self.minutes = None, None
        if stored is not None and stored.result is not None:
            self.outcome = OutcomeDecided(
                self.session_id, stored.votes, stored.votes_for, stored.votes_against, stored.result,
                stored.announcement or "", stored.decided_at or 0.0,
            )
            self.banner.show_outcome(self.outcome)
            if stored.minutes:
                self.minutes = stored.minutes
                self.banner.show_minutes_ready()
        self.refresh_bindings()

    def _turn_look(self, turn: Turn) -> tuple[str, str]:
        return self._look(turn.speaker, turn.kind)

    def _refresh_marks(self) -> None:
        """Each turn's "‹ 2/3 ›" and "✎ edited", and the header's branch, from the scheduler's tree."""
        tree = getattr(self.scheduler, "tree", None)
        if self.scheduler is None or tree is None:
            return
        siblings: dict[str | None, list[str]] = {}
        for node in tree.nodes.values():  # oldest first, as TurnTree.alternatives lists them
            siblings.setdefault(node.parent, []).append(node.node)
        marks: dict[str, TurnMark] = {}
        for turn in self.scheduler.turns:
            alternatives = siblings.get(turn.parent, [turn.node])
            position = alternatives.index(turn.node) + 1 if turn.node in alternatives else 1
            marks[turn.node] = TurnMark(position, len(alternatives), turn.author == WATCHER)
        self.transcript.call_later(self.transcript.set_marks, marks)
        count = len(tree.branches)
        self.header.branch = f"branch {tree.current} of {count}" if count > 1 else ""

    def _stance_measured(self, event: StanceMeasured) -> None:
        member = self._members.get(event.agent)
        if member is None or member.moderator:
            return
        member.stances.append(event.p_for)
        self.roster.refresh_entries()
        self.stats.set_stances(list(self._members.values()))

    def _count_turn(self, turn: Turn) -> None:
        member = self._members.get(turn.speaker)
        if member is None:
            return
        if turn.status != TurnStatus.SKIPPED:
            member.turns += 1
        member.words += len(turn.content.split())
        if turn.finished_at is not None and turn.started_at:
            member.talk_s += max(0.0, turn.finished_at - turn.started_at)
        if self.engines.engine is not None and self.scheduler is not None:
            member.kv_tokens = self.engines.engine.state_tokens(self.scheduler.agent_key(turn.speaker))
        self.roster.refresh_entries()
        self.stats.set_talk(list(self._members.values()))

    def _look(self, speaker: str, kind: TurnKind) -> tuple[str, str]:
        member = self._members.get(speaker)
        if member is not None:
            return member.colour, member.emoji
        if kind is TurnKind.SUMMARY:
            return SUMMARY_COLOUR, "📝"
        return AUDIENCE_COLOUR, "🙋"

    def _set_state(self, state: DebateState) -> None:
        self.state = state
        self.header.state = state
        self.refresh_bindings()
        if state != "loading" and self._spinner is not None:
            self._spinner.stop()  # type: ignore[attr-defined]
            self._spinner = None

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
        if action == "call_vote" and (not self.probing or self.vote_called or self.outcome is not None or self.state not in ("debating", "pausing", "paused", "starting")):
            return None
        return True

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

    def action_show_tally(self) -> None:
        from townhall.tui.screens.tally import TallyScreen

        can_vote = self.check_action("call_vote", ()) is True
        members = list(self._members.values())
        self.app.push_screen(TallyScreen(members, self.outcome, can_vote=can_vote, probing=self.probing), self._tally_closed)

    def _tally_closed(self, vote: bool | None) -> None:
        if vote:
            self.action_call_vote()

    def action_call_vote(self) -> None:
        if (scheduler := self._need_scheduler()) is None:
            return
        if self.vote_called or self.outcome is not None:
            self.notify("The vote is already called.", severity="warning")
            return
        if not self.probing:
            why = "this town hall holds no ballot (ballot = false)" if not self.debate.spec.ballot else "this engine has no stance probe"
            self.notify(f"No vote to call: {why}.", severity="warning", markup=False)
            return
        scheduler.call_vote()
        self.vote_called = True
        self.banner.show_called()
        self.refresh_bindings()
        self.notify("Vote called: the closing ballot follows this turn, then the minutes.", timeout=4)

    def action_show_minutes(self) -> None:
        if self.minutes is None:
            self.notify("No minutes yet: they are written after the closing ballot.", severity="warning")
            return
        from townhall.tui.screens.minutes import MinutesScreen

        self.app.push_screen(MinutesScreen(f"Minutes — {self.debate.spec.motion}", self.minutes))

    def action_toggle_stats(self) -> None:
        """Right → bottom → hidden → right; on a narrow terminal "right" is skipped (it would not fit)."""
        shown = self.shown_stats_position()
        position = STATS_CYCLE[(STATS_CYCLE.index(shown) + 1) % len(STATS_CYCLE)]
        if position == "right" and self.narrow:
            position = "bottom"
        self.stats_position = position
        self._apply_stats_position(position)
        self.post_message(self.StatsMoved(position))

    def shown_stats_position(self) -> StatsPosition:
        """Where the stats pane is on screen now: a narrow terminal hides the right-hand pane."""
        if self.stats_position == "right" and self.narrow:
            return "hidden"
        return self.stats_position

    def _apply_stats_position(self, position: StatsPosition) -> None:
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

    def _target(self) -> Turn | None:
        """The selected turn (none selected: the last), as the scheduler holds it."""
        index = self.transcript.target()
        turns = self.scheduler.turns if self.scheduler is not None else []
        if index is None or index >= len(turns):
            self.notify("No turn to act on yet.", severity="warning")
            return None
        return turns[index]

    def action_prev_alternative(self) -> None:
        self._alternative(-1)

    def action_next_alternative(self) -> None:
        self._alternative(+1)

    def _alternative(self, step: int) -> None:
        if (turn := self._target()) is None:
            return
        view = self.transcript.views.get(turn.index)
        if view is None or view.mark.count < 2:
            self.notify(f"Turn #{turn.index} has no alternatives: r regenerates it.", severity="warning", markup=False)
            return
        index = turn.index
        self._branch_op(lambda s: s.alternative(index, step), None)

    def action_regenerate(self) -> None:
        if (turn := self._target()) is None:
            return
        if turn.kind is TurnKind.AUDIENCE or turn.scripted:
            self.notify(f"Turn #{turn.index} was not generated, so it cannot be regenerated: e edits it.", severity="warning", markup=False)
            return
        index = turn.index
        self._branch_op(lambda s: s.regenerate(index), f"Regenerating turn #{index}; the old one stays as an alternative (← →).")

    def action_edit_turn(self) -> None:
        if (turn := self._target()) is None:
            return
        from townhall.tui.screens.edit_turn import EditTurnScreen

        index, original = turn.index, turn.content

        def edited(text: str | None) -> None:
            if text is None:
                return
            if not text.strip():
                self.notify("An empty turn is not saved: the turn is unchanged.", severity="warning")
            elif text.strip() == original.strip():
                self.notify("Unchanged: nothing to save.", severity="warning")
            else:
                self._branch_op(lambda s: s.edit(index, text.strip()), f"Turn #{index} edited; the debate goes on from your version.")

        self.app.push_screen(EditTurnScreen(f"Edit turn #{index} — {turn.speaker}", original), edited)

    def action_fork(self) -> None:
        if (turn := self._target()) is None:
            return
        index = turn.index
        self._branch_op(lambda s: s.fork(index), f"New branch after turn #{index}.")

    def _branch_op(self, op: BranchOp, done: str | None) -> None:
        """Queue `op` on the running scheduler, or resume the ended session to apply it."""
        if self.scheduler is None or self.state in ("loading", "starting"):
            self.notify("The debate is still loading.", severity="warning")
            return
        if self.state in ("finished", "error") or self.session is None or not self.session.running:
            self._apply_after_end(op, done)
            return
        try:
            op(self.scheduler)
        except TownhallError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        if done:
            self.notify(done, timeout=4, markup=False)

    def _apply_after_end(self, op: BranchOp, done: str | None) -> None:
        """The session layer resumes the stored session; the op goes in before it runs,
        with no turns left (`session.plan_branch_op`), so the run applies it and ends. A new
        turn on the path gets a new closing ballot (if the town hall holds one); a flip or a
        fork says nothing new, so the banner shows the chosen branch's recorded outcome."""
        if self.store is None or self.session_id is None:
            self.notify("The debate has ended and no database holds it, so it cannot go on.", severity="warning")
            return
        from townhall.debate.session import plan_branch_op

        try:
            plan = plan_branch_op(self.store, self.session_id)
        except TownhallError as exc:
            self.post_message(ShowError("Cannot go on with this session", str(exc)))
            return
        debate = Debate(
            plan.spec, list(plan.personas), session_id=plan.session_id, history=list(plan.history),
            engine_config=self.debate.engine_config, tree=plan.tree, then=op,
        )
        if done:
            self.notify(done, timeout=4, markup=False)
        self.call_next(self.continue_debate, debate)
