"""The event subscriber that writes a debate to the database as it happens.

Durability is per turn: a row is inserted (`streaming`) when the turn starts and
rewritten whole when it finishes or fails, each in its own transaction. Tokens are
not written one by one; the text of a turn still streaming is checkpointed at most
every `checkpoint_s` seconds, so a process killed mid-turn leaves the words said so
far, and the next open marks that turn `interrupted` (see `database.recover_interrupted`).
The checkpoints are also what `townhall watch` shows of a turn in progress (`follow.py`):
one UPDATE of one row a second, a small WAL commit, so the default is 1 s.

Turns are keyed by their node in the session's tree (`TurnStarted.node`), since
alternatives share an index; BranchCreated adds a `branches` row, BranchSwitched moves
`sessions.current_branch`, and stances and outcomes are kept against the branch current
when they happen. A branch's head follows its new turns by the `turns_tree` trigger.

A write that fails (a full disk, a lock held past the busy timeout and the retries, the file
deleted) is the run's failure: the recorder raises `RecordError` once, so the bus stops the run
before its next turn (it is a critical subscriber), and from then on keeps every event in
`pending`, in order, writing nothing. `retry()` writes them when the cause is gone; the record
is then as if nothing had happened. `Store.rescue` writes them into a copy in memory instead.

It is the one writer of branch and turn rows for a debate: a live run's events come from the
bus, and `townhall fork`/`edit` hand it the branch service's events (`Store.fork`). The
statements themselves are in `rows.py`, shared with an import.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, assert_never

from pydantic import BaseModel

from townhall.domain import events as ev
from townhall.domain.branches import Branch
from townhall.domain.turns import Turn, TurnKind, TurnStatus, new_node_id
from townhall.store import rows
from townhall.store.database import Connection, writer_identity
from townhall.store.modelhash import model_sha256
from townhall.errors import RecordError
from townhall.store.records import OutcomeRecord, SessionStatus

log = logging.getLogger(__name__)

CHECKPOINT_S = 1.0
# A database another writer holds past the busy timeout is tried again after each of these pauses.
BUSY_BACKOFF_S: tuple[float, ...] = (0.5, 1.0, 2.0)
_CAUSES = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_BUSY": "another process holds the database's write lock",
    "SQLITE_LOCKED": "another process holds the database's write lock",
    "SQLITE_READONLY_DBMOVED": "the database file was moved or deleted",
    "SQLITE_READONLY": "the database is read-only",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
}


def write_cause(error: BaseException) -> str:
    """What stopped a write, in words a user can act on."""
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "") or ""
        for prefix, cause in _CAUSES.items():
            if name == prefix or (name.startswith(prefix + "_") and prefix != "SQLITE_READONLY"):
                return cause
        if name.startswith("SQLITE_READONLY"):
            return _CAUSES["SQLITE_READONLY"]
        return f"{error} ({name})" if name else str(error)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return f"{type(error).__name__}: {error}"


def _busy(error: sqlite3.Error) -> bool:
    name = getattr(error, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))

_END_STATUS: dict[str, SessionStatus] = {"stopped": "stopped", "error": "failed"}


def persona_dict(persona: Any) -> dict[str, Any]:
    if isinstance(persona, BaseModel):
        return persona.model_dump(mode="json")
    if isinstance(persona, dict):
        return dict(persona)
    raise TypeError(f"participant snapshot of unexpected type {type(persona).__name__}")


class Recorder:
    """Call it with each event (a critical bus subscriber); it raises `RecordError` once, at the
    first write that fails, and keeps what it could not write (`pending`) from then on."""

    def __init__(
        self,
        connection: Connection,
        *,
        checkpoint_s: float | None = CHECKPOINT_S,
        monotonic: Callable[[], float] = time.monotonic,
        busy_backoff_s: tuple[float, ...] | None = None,
    ) -> None:
        self._db = connection
        self._checkpoint_s = checkpoint_s
        self._monotonic = monotonic
        self._backoff = BUSY_BACKOFF_S if busy_backoff_s is None else busy_backoff_s
        self.failure: RecordError | None = None
        self.pending: list[ev.Event] = []  # every event since the first write that failed, in order
        # Streaming turns: (session, index) -> node, since TokenStreamed carries only the index;
        # the words so far and the last checkpoint per (session, node).
        self._streaming: dict[tuple[str, int], str] = {}
        self._partial: dict[tuple[str, str], list[str]] = {}
        self._last_flush: dict[tuple[str, str], float] = {}
        self.sessions: set[str] = set()  # sessions this recorder is writing

    def __call__(self, event: ev.Event) -> None:
        """Write what `event` changes; once a write has failed, keep it for `retry` instead."""
        if self.failure is not None:
            self.pending.append(event)
            return
        try:
            self._write(event)
        except (sqlite3.Error, OSError) as error:
            self.pending.append(event)
            self.failure = RecordError(self._db.path, write_cause(error))
            raise self.failure from None

    def retry(self) -> None:
        """Write what failed, in order; raises `RecordError` (keeping the rest) if it still cannot."""
        while self.pending:
            try:
                self._write(self.pending[0])
            except (sqlite3.Error, OSError) as error:
                self.failure = RecordError(self._db.path, write_cause(error))
                raise self.failure from None
            self.pending.pop(0)
        self.failure = None

    def unsaved_turns(self, session_id: str) -> int:
        """How many settled turns (shown to the watcher) are among the events not written."""
        return len({e.turn.node for e in self.pending
                    if isinstance(e, ev.TurnFinished | ev.TurnFailed) and e.session_id == session_id})

    def _write(self, event: ev.Event) -> None:
        """`_record`, tried again with a pause while another writer holds the lock."""
        self._db.check_file()
        for pause in (*self._backoff, None):
            try:
                self._record(event)
                return
            except sqlite3.OperationalError as error:
                if pause is None or not _busy(error):
                    raise
                log.info("the database is busy; writing %s again in %.1fs", type(event).__name__, pause)
                time.sleep(pause)

    def _record(self, event: ev.Event) -> None:
        """Write what `event` changes; mypy checks that every kind of event is handled here."""
        match event:
            case ev.SessionStarted():
                self._session_started(event)
            case ev.SessionEnded():
                self._session_ended(event)
            case ev.TurnStarted():
                self._turn_started(event)
            case ev.TokenStreamed():
                self._token_streamed(event)
            case ev.TurnFinished():
                self._settle(event.session_id, event.turn, None)
            case ev.TurnFailed():
                failed = event.turn if event.turn.status == TurnStatus.FAILED else replace(
                    event.turn, status=TurnStatus.FAILED)
                self._settle(event.session_id, failed, event.error)
            case ev.BranchCreated():
                self._branch_created(event)
            case ev.BranchSwitched():
                self._branch_switched(event)
            case ev.Paused():
                self._log_only(event.session_id, event.at, "paused", {})
            case ev.Resumed():
                self._log_only(event.session_id, event.at, "resumed", {})
            case ev.StrategyApplied():
                self._log_only(event.session_id, event.at, "strategy",
                               {"agent": event.agent, "strategy": event.strategy, "detail": event.detail})
            case ev.StanceMeasured():
                self._stance_measured(event)
            case ev.OutcomeDecided():
                self._outcome_decided(event)
            case ev.MinutesWritten():
                self._minutes_written(event)
            case _:
                assert_never(event)

    # -- sessions --------------------------------------------------------------
    def _session_started(self, event: ev.SessionStarted) -> None:
        info = event.engine
        spec = dict(event.spec)
        sha = model_sha256(self._db, info.model_path)
        pid, host = writer_identity()
        with self._db.transaction() as conn:
            exists = conn.execute("SELECT 1 FROM sessions WHERE id = ?", (event.session_id,)).fetchone()
            if exists:
                conn.execute(
                    "UPDATE sessions SET status = 'running', ended_at = NULL, end_reason = NULL, error = NULL, "
                    "updated_at = ?, writer_pid = ?, writer_host = ?, backend = ?, model_name = ?, "
                    "model_path = ?, model_sha256 = ?, n_ctx = ?, device = ? WHERE id = ?",
                    (event.at, pid, host, info.backend, info.model_name, info.model_path, sha,
                     info.n_ctx, info.device, event.session_id),
                )
            else:
                conn.execute(
                    "INSERT INTO sessions(id, title, motion, spec, backend, model_name, model_path, model_sha256, "
                    "n_ctx, device, seed, created_at, updated_at, status, writer_pid, writer_host) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                    (event.session_id, spec.get("title"), str(spec.get("motion") or ""), rows.to_json(spec),
                     info.backend, info.model_name, info.model_path, sha, info.n_ctx, info.device,
                     spec.get("seed"), event.at, event.at, pid, host),
                )
                rows.ensure_first_branch(conn, event.session_id, event.at)
                rows.insert_participants(conn, event.session_id, [persona_dict(p) for p in event.participants])
            rows.add_event(conn, event.session_id, event.at, "resumed_session" if exists else "started", {})
        self.sessions.add(event.session_id)

    def _session_ended(self, event: ev.SessionEnded) -> None:
        status = _END_STATUS.get(event.reason, "finished")
        with self._db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM sessions WHERE id = ?", (event.session_id,)).fetchone():
                return  # it never started (the model failed to load): nothing to keep
            conn.execute(
                "UPDATE sessions SET status = ?, end_reason = ?, error = ?, ended_at = ?, updated_at = ?, "
                "writer_pid = NULL WHERE id = ?",
                (status, event.reason, event.error, event.at, event.at, event.session_id),
            )
            rows.add_event(conn, event.session_id, event.at, "ended",
                           {"reason": event.reason, "turns": event.turns, "error": event.error})
        self.sessions.discard(event.session_id)

    # -- turns -----------------------------------------------------------------
    def _turn_started(self, event: ev.TurnStarted) -> None:
        node = event.node or new_node_id()
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            branch, parent = self._placement(conn, event.session_id, bool(event.node), event.branch, event.parent)
            turn = Turn(index=event.index, speaker=event.speaker, kind=TurnKind(event.kind),
                        status=TurnStatus.STREAMING, started_at=event.at, phase=event.phase,
                        node=node, parent=parent, branch=branch)
            self._upsert(conn, event.session_id, turn, event.at)
            self._move_head(conn, event.session_id, branch, node)
        key = (event.session_id, node)
        self._streaming[(event.session_id, event.index)] = node
        self._partial[key] = []
        self._last_flush[key] = self._monotonic()

    def _token_streamed(self, event: ev.TokenStreamed) -> None:
        node = self._streaming.get((event.session_id, event.index))
        if node is None:
            return  # its TurnStarted came before this store was attached: no row to fill
        key = (event.session_id, node)
        pieces = self._partial.setdefault(key, [])
        pieces.append(event.text)
        if self._checkpoint_s is None:
            return
        now = self._monotonic()
        if now - self._last_flush.get(key, now) >= self._checkpoint_s:
            self._last_flush[key] = now
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE turns SET content = ? WHERE session_id = ? AND node = ? AND status = 'streaming'",
                    ("".join(pieces), event.session_id, node),
                )

    def _settle(self, session_id: str, turn: Turn, error: str | None) -> None:
        """Write the finished turn over its streaming row: the one with its node, else (a
        publisher whose finished Turn carries another node) the one streaming at its index."""
        node = turn.node
        if (session_id, node) not in self._partial:
            node = self._streaming.get((session_id, turn.index), node)
        if self._streaming.get((session_id, turn.index)) == node:
            del self._streaming[(session_id, turn.index)]
        self._partial.pop((session_id, node), None)
        self._last_flush.pop((session_id, node), None)
        at = turn.finished_at or turn.started_at or time.time()
        with self._db.transaction() as conn:
            self._ensure_session(conn, session_id, at)
            known = conn.execute("SELECT 1 FROM turns WHERE session_id = ? AND node = ?", (session_id, node)).fetchone()
            if known:
                placed = replace(turn, node=node)
            else:
                branch, parent = self._placement(conn, session_id, True, turn.branch, turn.parent)
                placed = replace(turn, node=node, branch=branch, parent=parent)
            self._upsert(conn, session_id, placed, at)
            if not known:
                self._move_head(conn, session_id, placed.branch, node)
            if error is not None:
                rows.add_event(conn, session_id, at, "error",
                               {"turn_index": turn.index, "speaker": turn.speaker, "error": error})

    @staticmethod
    def _placement(
        conn: sqlite3.Connection, session_id: str, placed: bool, branch: int, parent: str | None
    ) -> tuple[int, str | None]:
        """The branch a new turn goes on, and its parent.

        A publisher that gives no node knows nothing of the tree: its turn goes at the end of
        the current branch. Otherwise the turn's own parent stands, and it goes on the current
        branch when that branch ends at the parent (a scheduler resumed on a one-branch view of
        a forked session still says branch 1), else on the branch it names.
        """
        current = rows.current_branch(conn, session_id)
        row = conn.execute("SELECT head FROM branches WHERE session_id = ? AND number = ?",
                           (session_id, current)).fetchone()
        head = row[0] if row else None
        if not placed:
            return current, head
        if head == parent:
            return current, parent
        return branch, parent

    @staticmethod
    def _move_head(conn: sqlite3.Connection, session_id: str, branch: int, node: str) -> None:
        """The scheduler's new turn ends its branch, even where the record's head was elsewhere
        (a resumed run that stepped back over a half-said turn continues from before it)."""
        conn.execute("UPDATE branches SET head = ? WHERE session_id = ? AND number = ?", (node, session_id, branch))

    @staticmethod
    def _upsert(conn: sqlite3.Connection, session_id: str, turn: Turn, at: float) -> None:
        rows.write_turn(conn, session_id, turn)
        conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (at, session_id))

    # -- branches ------------------------------------------------------------------
    def _branch_created(self, event: ev.BranchCreated) -> None:
        branch = Branch(event.branch, event.parent, event.fork, event.fork, event.reason, event.at)
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            if not rows.insert_branch(conn, event.session_id, branch):
                # a scheduler that was not given the stored tree: never rewrite a kept branch
                log.warning("session %s: branch %d already exists; its record is kept as it was",
                            event.session_id, event.branch)
            rows.set_current_branch(conn, event.session_id, event.branch, event.at)
            rows.add_event(conn, event.session_id, event.at, "branch",
                           {"branch": event.branch, "parent": event.parent, "fork": event.fork, "reason": event.reason})

    def _branch_switched(self, event: ev.BranchSwitched) -> None:
        head = event.turns[-1].node if event.turns else None
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            rows.insert_branch(conn, event.session_id, Branch(event.branch, head=head, created_at=event.at))
            rows.set_current_branch(conn, event.session_id, event.branch, event.at)
            rows.add_event(conn, event.session_id, event.at, "switch", {"branch": event.branch})

    # -- the stance probe, the ballot, the minutes ------------------------------------
    def _stance_measured(self, event: ev.StanceMeasured) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            rows.insert_stance(conn, event.session_id, event, rows.current_branch(conn, event.session_id))

    def _outcome_decided(self, event: ev.OutcomeDecided) -> None:
        ballot = OutcomeRecord(event.session_id, event.votes, event.votes_for, event.votes_against, event.result,
                               event.announcement, decided_at=event.at)
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            rows.upsert_ballot(conn, event.session_id, rows.current_branch(conn, event.session_id), ballot)
            rows.add_event(conn, event.session_id, event.at, "outcome",
                           {"result": event.result, "for": event.votes_for, "against": event.votes_against})

    def _minutes_written(self, event: ev.MinutesWritten) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            rows.upsert_minutes(conn, event.session_id, rows.current_branch(conn, event.session_id), event.text,
                                event.at)

    def _log_only(self, session_id: str, at: float, kind: str, detail: dict[str, Any]) -> None:
        """An event that changes nothing but the session's event log."""
        with self._db.transaction() as conn:
            self._ensure_session(conn, session_id, at)
            rows.add_event(conn, session_id, at, kind, detail)

    @staticmethod
    def _ensure_session(conn: sqlite3.Connection, session_id: str, at: float) -> None:
        """A store attached after SessionStarted still keeps the turns, under a placeholder session."""
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
            return
        log.warning("recording session %s without its SessionStarted event", session_id)
        pid, host = writer_identity()
        conn.execute(
            "INSERT INTO sessions(id, motion, spec, created_at, updated_at, status, writer_pid, writer_host) "
            "VALUES (?, '', '{}', ?, ?, 'running', ?, ?)",
            (session_id, at, at, pid, host),
        )
        rows.ensure_first_branch(conn, session_id, at)

    # -- shutdown ----------------------------------------------------------------
    def close(self, now: float | None = None) -> None:
        """The app is closing mid-debate: keep what was said, mark the cut-off turns interrupted.

        After a failed write nothing is written here: the next open settles the session
        (`database.recover_interrupted`), and `pending` still holds what was not written."""
        if self.failure is not None:
            return
        now = time.time() if now is None else now
        for (session_id, node), pieces in list(self._partial.items()):
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE turns SET content = ?, status = 'interrupted', finished_at = ?, "
                    "finish_reason = COALESCE(finish_reason, 'cancelled') "
                    "WHERE session_id = ? AND node = ? AND status = 'streaming'",
                    ("".join(pieces), now, session_id, node),
                )
        self._partial.clear()
        self._streaming.clear()
        for session_id in list(self.sessions):
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE sessions SET status = 'interrupted', end_reason = COALESCE(end_reason, 'closed'), "
                    "updated_at = ?, writer_pid = NULL WHERE id = ? AND status = 'running'",
                    (now, session_id),
                )
        self.sessions.clear()
