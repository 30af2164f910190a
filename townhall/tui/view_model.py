"""The debate screen's controller and view-model, without Textual.

The screen used to hold a dozen flags and set each widget by hand in sixty methods; the
rules of what a debate shows (which turns "turn i of N" counts, who speaks now and next,
each participant's stances, the outcome, branch n of m) lived among widget calls, testable
only through Pilot. Here they are plain state, changed by the scheduler's events (one
`match` over the `Event` union, so mypy flags an unhandled event) and by the watcher's
keys. The screen copies the state into its reactives after each change (`show_state`) and
draws the transcript when asked (`DebateView`): the transcript is a log of turns, drawn
as they come, not a state to compare.
"""

from __future__ import annotations

import time
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, assert_never

from townhall.debate.ballot import VOTE_PHASE
from townhall.debate.session import SessionScheduler
from townhall.debate.prompts import AUDIENCE
from townhall.debate.reading_pace import ReadingPace
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
from townhall.domain.turns import BOX, WATCHER, Turn, TurnKind, TurnStatus, uses_turn_budget
from townhall.errors import TownhallError
from townhall.tui.colours import AUDIENCE_COLOUR, SUMMARY_COLOUR, speaker_colour

if TYPE_CHECKING:
    from townhall.domain.branches import TurnTree
    from townhall.engine.base import Engine
    from townhall.store import OutcomeRecord, Store

StatsPosition = Literal["right", "bottom", "hidden"]
STATS_CYCLE: tuple[StatsPosition, ...] = ("right", "bottom", "hidden")
DebateState = Literal["loading", "starting", "debating", "pausing", "paused", "finished", "error"]
VOTING_STATES: tuple[DebateState, ...] = ("debating", "pausing", "paused", "starting")  # a vote can be called
Severity = Literal["information", "warning", "error"]
Look = tuple[str, str]  # a speaker's colour and emoji


@dataclass
class Member:
    """What the roster shows for one participant; updated from events, never from widgets."""

    name: str
    title: str
    colour: str
    emoji: str = ""
    moderator: bool = False
    turns: int = 0
    words: int = 0
    kv_tokens: int | None = 0  # None: no engine to ask (a watcher), so the roster leaves the line out
    talk_s: float = 0.0
    stances: list[float] = field(default_factory=list)  # p_for per probe reading, oldest first
    side: str | None = None  # the side the town hall gave (for / against / undecided), from SessionStarted

    @property
    def p_for(self) -> float | None:
        return self.stances[-1] if self.stances else None


@dataclass(frozen=True)
class TurnMark:
    """A turn's place among its alternatives (`position` of `count`, from 1) and its author."""

    position: int = 1
    count: int = 1
    edited: bool = False


def counts_as_debate_turn(turn: Turn) -> bool:
    """What "turn i of N" counts: a turn of the budget (`uses_turn_budget`) that a persona or
    the chair said, less the announcement of the vote, which closes the debate and is none of it."""
    return uses_turn_budget(turn) and turn.kind is not TurnKind.SUMMARY and turn.phase != VOTE_PHASE


def turn_marks(tree: TurnTree, turns: Sequence[Turn]) -> dict[str, TurnMark]:
    """Each turn's "‹ 2/3 ›" and "✎ edited", by node, for the path `turns` of `tree`."""
    siblings: dict[str | None, list[str]] = {}
    for node in tree.nodes.values():  # oldest first, as TurnTree.alternatives lists them
        siblings.setdefault(node.parent, []).append(node.node)
    marks: dict[str, TurnMark] = {}
    for turn in turns:
        alternatives = siblings.get(turn.parent, [turn.node])
        position = alternatives.index(turn.node) + 1 if turn.node in alternatives else 1
        marks[turn.node] = TurnMark(position, len(alternatives), turn.author == WATCHER)
    return marks


def shown_stats_position(position: StatsPosition, narrow: bool) -> StatsPosition:
    """Where the stats pane is on screen: a narrow terminal hides the right-hand pane."""
    return "hidden" if position == "right" and narrow else position


def next_stats_position(position: StatsPosition, narrow: bool) -> StatsPosition:
    """Right → bottom → hidden → right, from where it shows; on a narrow terminal "right" is
    skipped (it would not fit)."""
    shown = shown_stats_position(position, narrow)
    following = STATS_CYCLE[(STATS_CYCLE.index(shown) + 1) % len(STATS_CYCLE)]
    return "bottom" if following == "right" and narrow else following


class DebateView(Protocol):
    """What the view-model asks of the screen beyond its state: the transcript and the toasts."""

    def start_turn(self, event: TurnStarted, look: Look) -> None: ...
    def finish_turn(self, turn: Turn, look: Look) -> None: ...
    def redraw_from(self, index: int, turns: list[Turn]) -> None: ...
    def show_marks(self, marks: dict[str, TurnMark]) -> None: ...
    def show_turn_stats(self, turn: Turn) -> None: ...
    def say(self, text: str, *, title: str = "", severity: Severity = "information", timeout: float | None = None,
            markup: bool = True) -> None: ...
    def show_error(self, title: str, text: str) -> None: ...
    def show_record_error(self, session_id: str, text: str) -> None:
        """The record could not be written: offer to retry or to save the session elsewhere."""
    def show_state(self, model: DebateViewModel) -> None:
        """Copy the model's state into the screen (its reactives draw what changed)."""


P = ParamSpec("P")
R = TypeVar("R")


def _renders(method: Callable[Concatenate[DebateViewModel, P], R]) -> Callable[Concatenate[DebateViewModel, P], R]:
    """After the change, the view renders the new state: no caller has to remember to."""

    @functools.wraps(method)
    def changed(self: DebateViewModel, *args: P.args, **kwargs: P.kwargs) -> R:
        result = method(self, *args, **kwargs)
        self.view.show_state(self)
        return result

    return changed


class DebateViewModel:
    """One debate as the screen shows it, from the first event of a run to the last.

    Dependencies come in: the view (the screen, or a test's recorder), the store for a
    resumed session's recorded stances and outcome, a clock for the live speed, and the
    reading pace every run of this window is handed (flat out when none is given).
    `attach` hands it each run's scheduler and engine.
    """

    def __init__(self, view: DebateView, *, store: Store | None = None,
                 clock: Callable[[], float] = time.perf_counter, pace: ReadingPace | None = None) -> None:
        self.view = view
        self.pace = pace if pace is not None else ReadingPace()
        self.pace_status = self.pace.status()  # the header's "240 wpm · reading 4s"
        self.store = store
        self.ballot = True  # the town hall holds a closing ballot (known with the engine)
        self.clock = clock
        self.scheduler: SessionScheduler | None = None
        self.engine: Engine | None = None
        self.session_id: str | None = None
        self.state: DebateState = "loading"
        self.end_reason: str | None = None
        self.members: dict[str, Member] = {}
        self.speaking: str | None = None
        self.next_up: str | None = None
        self.turn = 0  # the header's "turn i of N"
        self.counted = 0  # what "turn i of N" counts: the scheduler's max_turns ignores history
        self.made: set[str] = set()  # this session's turns said while on screen: a branch switch recounts them
        self.branch = ""  # "branch 2 of 3" once there are several
        self.outcome: OutcomeDecided | None = None
        self.minutes: str | None = None
        self.vote_called = False
        self.probing = True  # known once the engine is ready: a probe, and a town hall that votes
        self.revision = 0  # bumped when a member's counts or stances change: the roster and stats redraw
        self.engine_local = True  # the engine runs here: its KV states can be shown (not when watching)
        self._pieces = 0
        self._turn_started = 0.0

    # -- a run's life ------------------------------------------------------------------
    @_renders
    def start_run(self, *, reopened: bool) -> None:
        """A new run begins loading; `reopened`: the same session resumed for a branch op."""
        if not reopened:
            self.made.clear()
        self.state, self.end_reason = "loading", None
        self.outcome, self.minutes, self.vote_called = None, None, False
        self.counted = 0
        if not reopened:
            self.turn = 0  # a reopened session's count comes back with `recount`

    @_renders
    def set_members(self, personas: Sequence[Persona], chair: str | None) -> None:
        """The roster in speaking order; colours follow the persona file, else the palette."""
        chair_key = (chair or "").casefold()
        self.members = {
            p.name: Member(p.name, p.title, speaker_colour(p.color, i), p.emoji or "",
                           p.moderator or p.name.casefold() == chair_key, kv_tokens=0 if self.engine_local else None)
            for i, p in enumerate(personas)
        }
        self.revision += 1

    def _given_sides(self, spec: Mapping[str, Any]) -> None:
        """Each speaker's side as the session recorded it (every debate has sides: debate.sides)."""
        stances = spec.get("stances") or {}
        by_key = {name.casefold(): value for name, value in stances.items()}
        for member in self.members.values():
            stance = by_key.get(member.name.casefold())
            member.side = stance.get("side") if isinstance(stance, Mapping) else None
        self.revision += 1

    @_renders
    def engine_ready(self, stance_probe: str | None, ballot: bool) -> None:
        self.ballot = ballot
        self.probing = stance_probe is not None and ballot
        self.state = "starting"

    def attach(self, scheduler: SessionScheduler, engine: Engine) -> None:
        self.scheduler, self.engine, self.session_id = scheduler, engine, scheduler.session_id

    @_renders
    def finished(self, session_id: str, reason: str, error: str | None) -> None:
        """The run returned; `error` only when no SessionEnded has shown it."""
        if session_id != self.session_id:
            return  # a replaced debate finishing late must not mark the new one finished
        self.end_reason = reason
        if error:
            self.state = "error"
            self.view.show_error("The debate stopped with an error", error)
        elif reason != "error":
            self.state = "finished"
        self.speaking = self.next_up = None

    @_renders
    def failed(self) -> None:
        self.state = "error"

    # -- events ------------------------------------------------------------------------
    @_renders
    def handle(self, event: Event) -> None:
        """Apply one scheduler event (tokens come through `tokens`); another session's is ignored."""
        if event.session_id != self.session_id:
            return
        match event:
            case SessionStarted():
                self.state = "debating"
                self._given_sides(event.spec)
            case TurnStarted():
                self._turn_started_event(event)
            case TurnFinished():
                self._turn_finished(event.turn)
            case TurnFailed():
                self._turn_finished(event.turn)
                self.view.say(event.error, title=f"{event.turn.speaker}'s turn failed", severity="error", markup=False)
            case BranchSwitched():
                self._branch_switched(event)
            case BranchCreated():
                self.refresh_marks()
            case Paused():
                self.state = "paused"
            case Resumed():
                self.state = "debating"
            case StrategyApplied():
                self.view.say(f"{event.agent}: {event.strategy} — {event.detail}", title="Context", markup=False)
            case StanceMeasured():
                self._stance(event.agent, event.p_for)
            case OutcomeDecided():
                self.outcome = event
            case MinutesWritten():
                self.minutes = event.text
                self.view.say("The minutes are written: press m to read them.", title="Minutes", markup=False)
            case SessionEnded():
                self._ended(event)
            case TokenStreamed():
                pass  # batched by the screen and drawn through `tokens`
            case _:
                assert_never(event)

    def tokens(self, pieces: int) -> float | None:
        """Count streamed pieces of the turn in progress; returns its speed so far (pieces/s)."""
        self._pieces += pieces
        elapsed = self.clock() - self._turn_started
        return self._pieces / elapsed if elapsed > 0 else None

    def _turn_started_event(self, event: TurnStarted) -> None:
        self._pieces, self._turn_started = 0, self.clock()
        if event.kind in (TurnKind.AGENT, TurnKind.MODERATOR) and event.phase != VOTE_PHASE:
            self.turn = self.counted + 1
        self.view.start_turn(event, self.look(event.speaker, event.kind))
        self.refresh_marks()
        self.speaking, self.next_up = event.speaker, self._next_speaker()
        if self.state not in ("paused", "pausing"):
            self.state = "debating"

    def _turn_finished(self, turn: Turn) -> None:
        self.view.finish_turn(turn, self.look(turn.speaker, turn.kind))
        self._count(turn)
        if counts_as_debate_turn(turn):
            self.made.add(turn.node)
            self.counted += 1
            self.turn = self.counted
        self.view.show_turn_stats(turn)
        self.speaking, self.next_up = None, self._next_speaker()
        self.refresh_marks()

    def _branch_switched(self, event: BranchSwitched) -> None:
        """Another path: redraw from its first difference, recount the roster and the stats."""
        turns = list(event.turns)
        self.view.redraw_from(event.from_index, turns)
        self.recount(turns)
        self.refresh_marks()
        self._show_stored_outcome()

    def _ended(self, event: SessionEnded) -> None:
        self.end_reason = event.reason
        if event.error and self._record_failed():
            self.state = "paused"  # stopped before its next turn; the transcript stays, nothing is lost
            self.view.show_record_error(event.session_id, event.error)
        elif event.error:
            self.state = "error"
            self.view.show_error(f"The debate ended: {event.reason}", event.error)
        else:
            self.state = "finished"

    def _record_failed(self) -> bool:
        """The run stopped because the store could not write it (it keeps what it could not take)."""
        return self.store is not None and self.session_id is not None \
            and self.store.record_failure(self.session_id) is not None

    def _next_speaker(self) -> str | None:
        return self.scheduler.next_speaker if self.scheduler is not None else None

    # -- members -----------------------------------------------------------------------
    def _stance(self, agent: str, p_for: float) -> None:
        member = self.members.get(agent)
        if member is not None and not member.moderator:
            member.stances.append(p_for)
            self.revision += 1

    def _count(self, turn: Turn) -> None:
        member = self.members.get(turn.speaker)
        if member is None:
            return
        if turn.status != TurnStatus.SKIPPED:
            member.turns += 1
        member.words += len(turn.content.split())
        if turn.finished_at is not None and turn.started_at:
            member.talk_s += max(0.0, turn.finished_at - turn.started_at)
        if self.engine is not None and self.scheduler is not None:
            member.kv_tokens = self.engine.state_tokens(self.scheduler.agent_key(turn.speaker))
        self.revision += 1

    @_renders
    def show_history(self, turns: Sequence[Turn]) -> None:
        """A resumed session's turns, drawn and counted; its stances go on from the record."""
        for turn in turns:
            self.view.finish_turn(turn, self.look(turn.speaker, turn.kind))
            self._count(turn)
        self.show_stored_stances()

    @_renders
    def recount(self, turns: Sequence[Turn]) -> None:
        """The roster and stats for path `turns` (another branch: other speakers, other stances)."""
        for member in self.members.values():
            member.turns, member.words, member.talk_s = 0, 0, 0.0
            if self.store is not None:
                member.stances.clear()  # read again below, for the branch now current
        for turn in turns:
            self._count(turn)
        self.counted = len([t for t in turns if t.node in self.made and counts_as_debate_turn(t)])
        self.turn = self.counted
        self.show_stored_stances()
        self.revision += 1

    def _from_record(self, read: Callable[[Store, str], R], show: Callable[[str, R], None]) -> None:
        """Hand `show` the session's id and what `read` finds in its record. Nothing happens
        without a record to read: no store, no session yet, or one the record does not hold yet."""
        if self.store is None or self.session_id is None:
            return
        try:
            found = read(self.store, self.session_id)
        except TownhallError:
            return  # a session not yet in the record has nothing recorded
        show(self.session_id, found)

    def show_stored_stances(self) -> None:
        """A resumed session's bars and chart go on from its recorded readings."""
        self._from_record(lambda store, session_id: store.stances_of(session_id), self._show_readings)

    def _show_readings(self, session_id: str, readings: Sequence[StanceMeasured]) -> None:
        for reading in readings:
            self._stance(reading.agent, reading.p_for)
        self.revision += 1

    def _show_stored_outcome(self) -> None:
        """The banner for the branch now current: its recorded ballot, or none."""
        self._from_record(lambda store, session_id: store.outcome_of(session_id), self._show_outcome)

    def _show_outcome(self, session_id: str, stored: OutcomeRecord | None) -> None:
        self.outcome, self.minutes = None, None
        if stored is not None and stored.result is not None:
            self.outcome = OutcomeDecided(
                session_id, stored.votes, stored.votes_for, stored.votes_against, stored.result,
                stored.announcement or "", stored.decided_at or 0.0,
            )
            self.minutes = stored.minutes or None

    def look(self, speaker: str, kind: TurnKind) -> Look:
        member = self.members.get(speaker)
        if member is not None:
            return member.colour, member.emoji
        if kind is TurnKind.SUMMARY:
            return SUMMARY_COLOUR, "📝"
        return AUDIENCE_COLOUR, "🙋"

    def refresh_marks(self) -> None:
        """Each turn's marks and the header's branch, from the scheduler's tree."""
        if self.scheduler is None:
            return
        tree = self.scheduler.tree
        self.view.show_marks(turn_marks(tree, self.scheduler.turns))
        count = len(tree.branches)
        self.branch = f"branch {tree.current} of {count}" if count > 1 else ""

    # -- the reading pace --------------------------------------------------------------
    @_renders
    def pace_changed(self) -> None:
        """The pace or its hold changed (a key, a turn held, a hold over): the header follows. A hold
        begins and ends in the scheduler's task, so the screen calls this from its own queue."""
        self.pace_status = self.pace.status()

    def change_pace(self, step: int) -> None:
        """The pace keys: -1 slower, +1 faster, 0 flat out (or back); the run under way follows at once."""
        if step < 0:
            self.pace.slower()
        elif step > 0:
            self.pace.faster()
        else:
            self.pace.toggle_flat_out()
        self.view.say(f"Reading pace: {self.pace.label()}", timeout=2, markup=False)

    # -- the watcher's keys ------------------------------------------------------------
    def steerable(self) -> SessionScheduler | None:
        """The running scheduler, or None with a warning why the key does nothing."""
        if self.scheduler is None or self.state in ("finished", "error") or self.scheduler.status == "finished":
            what = "is still loading" if self.state in ("loading", "starting") else "is not running"
            self.view.say(f"The debate {what}.", severity="warning")
            return None
        return self.scheduler

    def step(self) -> None:
        if (scheduler := self.steerable()) is not None:
            scheduler.step()

    def interrupt(self) -> None:
        if (scheduler := self.steerable()) is not None:
            scheduler.interrupt()

    def skip(self) -> None:
        if (scheduler := self.steerable()) is not None:
            scheduler.skip()
            self.view.say("Skipping the speaker.", timeout=2)

    def interject(self, text: str) -> bool:
        """Queue the audience's line; False when it was not taken (the box keeps it)."""
        if (scheduler := self.steerable()) is None:
            return False
        try:
            scheduler.interject(text, AUDIENCE, BOX)
        except TownhallError as exc:
            self.view.say(str(exc), severity="error", markup=False)
            return False
        self.view.say("Interjection queued: it is the next turn.", timeout=3)
        return True

    @_renders
    def toggle_pause(self) -> None:
        if (scheduler := self.steerable()) is None:
            return
        # The scheduler pauses between turns; say so at once rather than after the turn.
        if scheduler.status == "paused" or self.state == "pausing":
            scheduler.resume()
            self.state = "debating"
        else:
            scheduler.pause()
            self.state = "pausing" if scheduler.status == "running" else "paused"

    def can_call_vote(self) -> bool:
        return self.probing and not self.vote_called and self.outcome is None and self.state in VOTING_STATES

    @_renders
    def call_vote(self) -> None:
        if (scheduler := self.steerable()) is None:
            return
        if self.vote_called or self.outcome is not None:
            self.view.say("The vote is already called.", severity="warning")
            return
        if not self.probing:
            why = ("this town hall holds no ballot (ballot = false)" if not self.ballot
                   else "this engine has no stance probe")
            self.view.say(f"No vote to call: {why}.", severity="warning", markup=False)
            return
        scheduler.call_vote()
        self.vote_called = True
        self.view.say("Vote called: the closing ballot follows this turn, then the minutes.", timeout=4)
