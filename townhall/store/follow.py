"""Following a debate another process is recording: the record's new rows, as the events they came from.

`townhall watch` has no scheduler to subscribe to; the writer's only trace is what its
recorder commits. A `Follower` reads that through a read-only connection
(`Store.open_read_only`: no migration, no recovery, so it never marks the writer's streaming
turn interrupted; in WAL mode it never blocks the writer) and, on each `poll`, turns what
changed since the last poll into the typed events the TUI's view-model already takes: a new
turn is TurnStarted, its checkpointed words TokenStreamed deltas, its end TurnFinished or
TurnFailed; new stance rows, the ballot, the minutes, a changed current path (BranchSwitched
from the first difference), the session's end. The first poll replays the session so far.

`PRAGMA data_version` changes only when another connection commits, so an idle poll costs
one pragma and one `kill(pid, 0)`: the writer is checked on every poll, and a writer gone
without ending the session (its pid dead on this host) is reported once.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from townhall.domain.events import (
    BranchSwitched,
    Event,
    MinutesWritten,
    OutcomeDecided,
    SessionEnded,
    SessionStarted,
    StanceMeasured,
    TokenStreamed,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from townhall.domain.turns import Turn, TurnStatus
from townhall.engine.base import BackendKind, EngineInfo
from townhall.errors import StoreError
from townhall.store.database import writer_alive
from townhall.store.records import row_to_stance
from townhall.store.store import Store

Alive = Callable[[int | None, str | None], bool | None]


@dataclass(frozen=True)
class Update:
    """What one poll found: the events since the last poll, in order, and the pid of a writer
    found gone without ending the session (once, on the poll that first finds it gone)."""

    events: list[Event] = field(default_factory=list)
    writer_gone: int | None = None


@dataclass
class _Shown:
    """A turn of the path as the events so far have drawn it."""

    node: str
    streaming: bool
    content: str


def newest_running(store: Store, alive: Alive = writer_alive) -> str | None:
    """The session most recently written that is still running with a live writer (or one this
    host cannot check: another host's), or None."""
    rows = store.connection.query(
        "SELECT id, writer_pid, writer_host FROM sessions WHERE status = 'running' ORDER BY updated_at DESC, id")
    return next((r["id"] for r in rows if alive(r["writer_pid"], r["writer_host"]) is not False), None)


class Follower:
    """One session of a read-only store, followed poll by poll; knows nothing of Textual."""

    def __init__(self, store: Store, session_id: str, *, alive: Alive = writer_alive) -> None:
        self.store = store
        self.session_id = store.resolve_id(session_id)
        self._alive = alive
        self._version: int | None = None
        self._started = False
        self.ended = False
        self._shown: list[_Shown] = []
        self._stance_id = 0
        self._outcome_key: tuple[Any, ...] | None = None
        self._minutes_key: tuple[Any, ...] | None = None
        self._writer: tuple[int | None, str | None] = (None, None)
        self._running = False
        self._gone: int | None = None

    def poll(self) -> Update:
        """The events since the last poll (the whole session so far on the first)."""
        db = self.store.connection
        try:
            with db.lock:
                version = int(db.conn.execute("PRAGMA data_version").fetchone()[0])
                if version == self._version:
                    return Update([], self._writer_gone())
                db.conn.execute("BEGIN")  # one snapshot for every table read below
                try:
                    events = self._read()
                finally:
                    db.conn.execute("COMMIT")
                self._version = version
        except sqlite3.Error as exc:
            raise StoreError(f"{db.path}: cannot read the record ({exc})") from None
        return Update(events, self._writer_gone())

    def _writer_gone(self) -> int | None:
        """The writer's pid the first time it is found dead with the session still running."""
        pid, host = self._writer
        if not self._running or self.ended or pid is None or pid == self._gone:
            return None
        if self._alive(pid, host) is False:
            self._gone = pid
            return pid
        return None

    # -- reading -----------------------------------------------------------------------
    def _read(self) -> list[Event]:
        rows = self.store.connection.query(
            "SELECT status, end_reason, error, writer_pid, writer_host, created_at, updated_at, ended_at "
            "FROM sessions WHERE id = ?", (self.session_id,))
        if not rows:
            return self._end("deleted", time.time(), None)
        session = rows[0]
        self._writer = (session["writer_pid"], session["writer_host"])
        self._running = session["status"] == "running"
        events: list[Event] = []
        if not self._started:
            events.append(self._session_started(float(session["created_at"] or 0.0)))
        tree = self.store.tree(self.session_id)
        path = tree.path(tree.current)
        at = float(session["updated_at"] or time.time())
        turn_events = self._turns(path, tree.current, at)
        switched = any(isinstance(e, BranchSwitched) for e in turn_events)
        events += turn_events
        events += self._stances(tree.current, first=not self._started, switched=switched)
        events += self._outcome(tree.current, switched)
        self._started = True
        if not self._running:
            events += self._end(session["end_reason"] or session["status"],
                                float(session["ended_at"] or at), session["error"], len(path))
        return events

    def _session_started(self, at: float) -> SessionStarted:
        record = self.store.get_session(self.session_id)
        info = EngineInfo(backend=cast(BackendKind, record.backend or "local"),
                          model_name=record.summary.model_name or "model", n_ctx=int(record.n_ctx or 0),
                          device=record.device or "", model_path=record.model_path)
        return SessionStarted(self.session_id, record.spec, record.personas, info, at)

    def _turns(self, path: list[Turn], branch: int, at: float) -> list[Event]:
        """The path against what is drawn: a changed path redraws from its first difference;
        the turn in progress gains its new words; new turns start (and finish when settled)."""
        events: list[Event] = []
        same = 0
        while same < min(len(self._shown), len(path)) and self._shown[same].node == path[same].node:
            same += 1
        if same < len(self._shown):
            settled = [t for t in path if t.status != TurnStatus.STREAMING]
            events.append(BranchSwitched(self.session_id, branch, tuple(settled), same, at))
            self._shown = [_Shown(t.node, False, t.content) for t in settled]
        elif self._shown and self._shown[-1].streaming:
            events += self._progress(self._shown[-1], path[len(self._shown) - 1])
        for turn in path[len(self._shown):]:
            events.append(TurnStarted(self.session_id, turn.index, turn.speaker, turn.kind, turn.started_at,
                                      turn.phase, turn.node, turn.parent, turn.branch))
            self._shown.append(_Shown(turn.node, True, ""))
            events += self._progress(self._shown[-1], turn)
        return events

    def _progress(self, shown: _Shown, turn: Turn) -> list[Event]:
        events: list[Event] = []
        if turn.status == TurnStatus.STREAMING:
            if len(turn.content) > len(shown.content) and turn.content.startswith(shown.content):
                events.append(TokenStreamed(self.session_id, turn.index, turn.speaker,
                                            turn.content[len(shown.content):]))
                shown.content = turn.content
            return events
        if turn.status == TurnStatus.FAILED:
            events.append(TurnFailed(self.session_id, turn, turn.error or "the turn failed"))
        else:
            events.append(TurnFinished(self.session_id, turn))
        shown.streaming, shown.content = False, turn.content
        return events

    def _stances(self, branch: int, *, first: bool, switched: bool) -> list[Event]:
        """New readings on the current branch. The first poll takes the path's readings (those of
        the branches it grew from too); after a switch the view reads the new path's itself."""
        rows = self.store.connection.query(
            "SELECT * FROM stances WHERE session_id = ? AND id > ? ORDER BY id", (self.session_id, self._stance_id))
        if rows:
            self._stance_id = int(rows[-1]["id"])
        if first:
            readings: list[StanceMeasured] = self.store.stances_of(self.session_id)
            return list(readings)
        if switched:
            return []
        return [row_to_stance(r) for r in rows if int(r["branch"] or 1) == branch]

    def _outcome(self, branch: int, switched: bool) -> list[Event]:
        """The current branch's ballot and minutes when they are new (a switch shows its own)."""
        stored = self.store.outcome_of(self.session_id)
        events: list[Event] = []
        if stored is None:
            return events
        ballot = (branch, stored.result, stored.decided_at)
        if stored.result is not None and ballot != self._outcome_key and not switched:
            events.append(OutcomeDecided(self.session_id, stored.votes, stored.votes_for, stored.votes_against,
                                         stored.result, stored.announcement or "", stored.decided_at or 0.0))
        minutes = (branch, stored.minutes_at)
        if stored.minutes and minutes != self._minutes_key and not switched:
            events.append(MinutesWritten(self.session_id, stored.minutes, stored.minutes_at or 0.0))
        self._outcome_key = ballot if stored.result is not None else self._outcome_key
        self._minutes_key = minutes if stored.minutes else self._minutes_key
        return events

    def _end(self, reason: str, at: float, error: str | None, turns: int = 0) -> list[Event]:
        if self.ended:
            return []
        self.ended = True
        return [SessionEnded(self.session_id, reason, at, turns, error)]
