"""The watch screen: a debate another process is recording, drawn as the debate screen draws its own.

It is the debate screen with a `Follower` where the session would be: the follower's events
go through the same view-model and widgets (header, roster, transcript, stats, outcome banner,
minutes), polled from the record a few times a second. It steers nothing: the keys that would
change the debate (pause, step, skip, interrupt, interject, vote, the branch keys) are not bound
at all and there is no interjection box; the tally, the minutes, the stats pane, an export and
selecting turns remain. It never writes: the store it reads is opened read-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.binding import Binding
from textual.timer import Timer

from townhall.debate.session import BranchKeyOp, SessionPlan
from townhall.domain.events import SessionEnded, SessionStarted
from townhall.domain.spec import TownHallSpec
from townhall.engine.base import Engine
from townhall.engine.factory import EngineConfig
from townhall.errors import StoreError, TownhallError
from townhall.store import Store
from townhall.store.follow import Follower, Update
from townhall.tui.bindings import DEBATE_ACTIONS
from townhall.tui.engine_holder import EngineHolder
from townhall.tui.messages import TokensArrived
from townhall.tui.screens.debate_screen import DebateScreen
from townhall.tui.view_model import StatsPosition

POLL_S = 0.3  # a checkpoint lands every second; a finished turn shows within a third of one
# What a watcher may do: look, read, export. Everything else would change the debate.
WATCH_ACTIONS = frozenset({"show_tally", "show_minutes", "toggle_stats", "export", "select_prev", "select_next",
                           "clear_selection"})


def watch_plan(store: Store, session_id: str) -> SessionPlan:
    """The town hall and cast a recorded session shows in the header and the roster."""
    record = store.get_session(session_id)
    try:
        spec = TownHallSpec.model_validate(record.spec)
    except ValueError:
        raise StoreError(f"session {record.id}: its stored settings are not a valid town hall") from None
    return SessionPlan(spec, record.personas, session_id=record.id)


def _no_engine(config: EngineConfig) -> Engine:
    raise TownhallError("watching loads no model")


class WatchScreen(DebateScreen, inherit_bindings=False):
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        a.binding() for a in DEBATE_ACTIONS if a.action in WATCH_ACTIONS]
    STEERING = False

    def __init__(self, follower: Follower, *, exports_dir: Path, stats_position: StatsPosition = "right",
                 poll_s: float = POLL_S) -> None:
        super().__init__(watch_plan(follower.store, follower.session_id), EngineHolder(None, _no_engine, None),
                         store=follower.store, stats_position=stats_position, exports_dir=exports_dir)
        self.follower = follower
        self.model.engine_local = False  # the writer's KV states are in its own process
        self.model.pace_status = ""  # the writer paces its own debate: no reading pace to show here
        self.poll_s = poll_s
        self._timer: Timer | None = None
        self._problem: str | None = None

    def _start_debate(self, plan: SessionPlan, reopened_for: BranchKeyOp | None = None,
                      engine_config: EngineConfig | None = None) -> None:
        """Follow the record instead of running a session (the debate screen's mount calls this)."""
        self.model.session_id = self.follower.session_id
        self.model.engine_ready("recorded" if plan.spec.ballot else None, plan.spec.ballot)
        self.header.note = "watching"
        self._poll()
        if not self.follower.ended:
            self._timer = self.set_interval(self.poll_s, self._poll)

    def _poll(self) -> None:
        try:
            update = self.follower.poll()
        except StoreError as exc:
            if str(exc) != self._problem:  # said once, and polled again: a busy moment passes
                self._problem = str(exc)
                self.notify(str(exc), title="Cannot read the record", severity="warning", markup=False)
            return
        self._show(update)

    def _show(self, update: Update) -> None:
        for event in update.events:
            if isinstance(event, SessionStarted):
                self.header.show_engine(event.engine)
            self._on_scheduler_event(event)  # the debate screen's own way in: tokens batched, the rest in order
            if isinstance(event, SessionEnded):
                self._ended(event)
        if update.writer_gone is not None:
            self.header.note = f"the writer stopped (process {update.writer_gone} is gone)"
            self.notify(f"Process {update.writer_gone}, which was recording this debate, is gone without ending it.",
                        title="The writer stopped", severity="warning", markup=False, timeout=10)

    def _ended(self, event: SessionEnded) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.header.note = f"the debate ended: {event.reason}"
        self.notify(f"The debate ended: {event.reason}.", title="Watching", markup=False)

    async def on_tokens_arrived(self, message: TokensArrived) -> None:
        """The words of a turn in progress, drawn; there is no speed to show (they come a checkpoint at a time)."""
        message.prevent_default()
        if self._live and message.session_id == self.session_id:
            self.transcript.call_later(self.transcript.append, message.index, message.text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in WATCH_ACTIONS:
            return False  # the tally asks whether a vote can be called: never from here
        return super().check_action(action, parameters)

    def show_error(self, title: str, text: str) -> None:
        """The writer's error is its own: said, not a dialog over the transcript."""
        self.say(text, title=title, severity="error", markup=False)
