"""`Store`: the one object the CLI and the TUI use to keep and read the record."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from townhall.debate.branching import BranchService
from townhall.domain.branches import Branch, TurnTree
from townhall.domain.events import Event, StanceMeasured, Subscriber
from townhall.errors import ConfigError, NotFoundError, RecordError, StoreError
from townhall.paths import default_db_path
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.store import database
from townhall.store.database import Connection
from townhall.store.recorder import CHECKPOINT_S, Recorder
from townhall.store.records import (
    OutcomeRecord,
    SearchHit,
    SessionRecord,
    SessionSummary,
    StoredEvent,
    loads,
    row_to_outcome,
    row_to_stance,
    row_to_turn,
)
from townhall.store import session_insert
from townhall.store.search import search as fts_search
from townhall.domain.turns import Turn, TurnStatus


class Subscribable(Protocol):
    """Whatever publishes the debate's events: a Scheduler or an EventBus."""

    def subscribe(self, fn: Subscriber, *, critical: bool = False) -> Callable[[], None]: ...


# `turns` counts the current branch's path: its head's index + 1 (an index is a position on its path).
_SUMMARY_SQL = (
    "SELECT s.*, COALESCE((SELECT t.turn_index + 1 FROM branches b JOIN turns t ON t.session_id = b.session_id "
    "AND t.node = b.head WHERE b.session_id = s.id AND b.number = s.current_branch), 0) AS turn_count, "
    "(SELECT COUNT(*) FROM branches b WHERE b.session_id = s.id) AS branch_count, "
    "(SELECT json_group_array(name) FROM (SELECT name FROM participants p WHERE p.session_id = s.id "
    "ORDER BY position)) AS names FROM sessions s"
)


def _summary(row: dict[str, Any]) -> SessionSummary:
    return SessionSummary(
        id=row["id"],
        title=row["title"],
        motion=row["motion"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        model_name=row["model_name"],
        participants=tuple(loads(row["names"], [])),
        turns=int(row["turn_count"]),
        current_branch=int(row["current_branch"] or 1),
        branch_count=max(1, int(row["branch_count"] or 0)),
    )


def _reading_limits(tree: TurnTree, number: int) -> dict[int, int]:
    """For each branch a path grew from, the last turn index it shares with branch `number`
    (readings taken there up to it are readings of this path too)."""
    limits: dict[int, int] = {}
    limit = 1 << 62
    at: int | None = number
    while at is not None and at in tree.branches and at not in limits:
        branch = tree.branches[at]
        limits[at] = limit
        fork = tree.nodes.get(branch.fork) if branch.fork is not None else None
        limit = min(limit, fork.index if fork is not None else -1)
        at = branch.parent
    return limits


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Store:
    """The SQLite record of every town hall. Open with `Store.open(path)`; see the package docs."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection
        self._recorders: list[Recorder] = []
        self._all_recorders: list[Recorder] = []  # every run recorded by this store, for what failed to write

    @classmethod
    def open(cls, path: Path | str | None = None) -> Store:
        """Open (create, migrate, recover) the database at `path`, default `paths.default_db_path()`."""
        return cls(database.connect(Path(path) if path is not None else default_db_path()))

    @classmethod
    def open_read_only(cls, path: Path | str | None = None) -> Store:
        """Open an existing database to read only (`townhall watch`): nothing migrates or recovers,
        and a write through it fails. Several may read while a debate is being written."""
        return cls(database.connect_read_only(Path(path) if path is not None else default_db_path()))

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def connection(self) -> Connection:
        return self._db

    def schema_version(self) -> int:
        with self._db.lock:
            return database.schema_version(self._db.conn)

    # -- recording -----------------------------------------------------------------
    def attach(self, source: Subscribable, *, checkpoint_s: float | None = CHECKPOINT_S) -> Callable[[], None]:
        """Record every event of a scheduler (or an EventBus) from now on; returns unsubscribe.

        The recorder is a critical subscriber: when a write fails the run stops before its next
        turn, and what was not written stays in memory (`unsaved`, `retry`, `rescue`).
        """
        recorder = Recorder(self._db, checkpoint_s=checkpoint_s)
        self._recorders.append(recorder)
        self._all_recorders.append(recorder)
        unsubscribe = source.subscribe(recorder, critical=True)

        def detach() -> None:
            unsubscribe()
            if recorder in self._recorders:
                self._recorders.remove(recorder)

        return detach

    def record_failure(self, session_id: str) -> RecordError | None:
        """Why this store could not record `session_id` (None when every write went through)."""
        return next((r.failure for r in self._all_recorders if r.failure is not None
                     and any(e.session_id == session_id for e in r.pending)), None)

    def unsaved_turns(self, session_id: str) -> int:
        """Turns of `session_id` shown to the watcher but not in the database."""
        return sum(r.unsaved_turns(session_id) for r in self._all_recorders)

    def retry(self) -> None:
        """Write what failed to be written, in order (the cause is gone); raises RecordError if it still cannot."""
        for recorder in self._all_recorders:
            recorder.retry()

    def rescue(self, session_id: str) -> Store:
        """The record as it would be had every write of `session_id` gone through: a copy of the
        database in memory (read only from the file, so a full disk or a held lock does not stop
        it) with the events that failed written into it. Export it to keep the session."""
        memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        with self._db.lock:
            self._db.conn.backup(memory)
        memory.execute("PRAGMA foreign_keys = ON")
        copy = Connection(Path(":memory:"), memory)
        recorder = Recorder(copy, checkpoint_s=None)
        for failed in self._all_recorders:
            for event in failed.pending:
                if event.session_id == session_id:
                    recorder(event)
        recorder.close()
        return Store(copy)

    # -- reading -------------------------------------------------------------------
    def resolve_id(self, id_or_prefix: str) -> str:
        """The full id of the one session whose id is or starts with `id_or_prefix`."""
        text = id_or_prefix.strip()
        if not text:
            raise NotFoundError("no session id given (see `townhall sessions list`)")
        if self._db.query("SELECT 1 FROM sessions WHERE id = ?", (text,)):
            return text
        rows = self._db.query(
            "SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT 6",
            (_escape_like(text) + "%",),
        )
        if not rows:
            raise NotFoundError(f"no session with id {text!r} in {self.path} (see `townhall sessions list`)")
        if len(rows) > 1:
            shown = ", ".join(r["id"] for r in rows[:5])
            raise NotFoundError(f"session id prefix {text!r} is ambiguous (matches {shown}); give more characters")
        return rows[0]["id"]

    def list_sessions(self, limit: int | None = None) -> list[SessionSummary]:
        sql = _SUMMARY_SQL + " ORDER BY s.created_at DESC, s.id"
        params: tuple = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        return [_summary(row) for row in self._db.query(sql, params)]

    def get_session(self, id_or_prefix: str) -> SessionRecord:
        session_id = self.resolve_id(id_or_prefix)
        row = self._db.query(_SUMMARY_SQL + " WHERE s.id = ?", (session_id,))[0]
        personas = tuple(
            Persona.model_validate(json.loads(p["persona"]))
            for p in self._db.query(
                "SELECT persona FROM participants WHERE session_id = ? ORDER BY position", (session_id,)
            )
        )
        events = tuple(
            StoredEvent(at=e["at"], type=e["type"], detail=loads(e["detail"], {}) or {})
            for e in self._db.query("SELECT at, type, detail FROM events WHERE session_id = ? ORDER BY id",
                                    (session_id,))
        )
        return SessionRecord(
            summary=_summary(row),
            spec=loads(row["spec"], {}) or {},
            personas=personas,
            backend=row["backend"],
            model_path=row["model_path"],
            model_sha256=row["model_sha256"],
            n_ctx=row["n_ctx"],
            device=row["device"],
            seed=row["seed"],
            error=row["error"],
            events=events,
        )

    def tree(self, id_or_prefix: str) -> TurnTree:
        """Every turn of a session on every branch (siblings oldest first), its current branch set."""
        session_id = self.resolve_id(id_or_prefix)
        return self._tree(session_id)

    def _tree(self, session_id: str) -> TurnTree:
        with self._db.lock:
            rows = self._db.query("SELECT * FROM turns WHERE session_id = ? ORDER BY id", (session_id,))
            branch_rows = self._db.query("SELECT * FROM branches WHERE session_id = ? ORDER BY number", (session_id,))
            current = self._db.query("SELECT current_branch FROM sessions WHERE id = ?", (session_id,))
        branches = [
            Branch(int(b["number"]), b["parent"], b["fork"], b["head"], b["reason"] or "start", b["created_at"] or 0.0)
            for b in branch_rows
        ]
        number = int(current[0]["current_branch"]) if current else 1
        if number not in {b.number for b in branches}:
            number = branches[0].number if branches else 1
        return TurnTree([row_to_turn(row) for row in rows], branches, current=number)

    @staticmethod
    def _branch(tree: TurnTree, session_id: str, number: int | None) -> Branch:
        if number is not None and number not in tree.branches:
            shown = ", ".join(map(str, tree.numbers()))
            raise NotFoundError(f"session {session_id} has no branch {number} (branches: {shown})")
        return tree.branch(number)

    def turns(self, session_id: str, branch: int | None = None) -> list[Turn]:
        """The path of `branch` (the current one by default), first turn to last."""
        session_id = self.resolve_id(session_id)
        tree = self._tree(session_id)
        return tree.path(self._branch(tree, session_id, branch).number)

    def stances_of(self, id_or_prefix: str, branch: int | None = None) -> list[StanceMeasured]:
        """The stance readings along a branch's path (the current one by default), in turn order:
        those taken on it, and those taken on the branches it grew from up to where it forked."""
        session_id = self.resolve_id(id_or_prefix)
        tree = self._tree(session_id)
        limits = _reading_limits(tree, self._branch(tree, session_id, branch).number)
        rows = self._db.query("SELECT * FROM stances WHERE session_id = ? ORDER BY turn_index, id", (session_id,))
        return [row_to_stance(r) for r in rows if int(r["turn_index"]) <= limits.get(int(r["branch"] or 1), -1)]

    def outcome_of(self, id_or_prefix: str, branch: int | None = None) -> OutcomeRecord | None:
        """A branch's closing ballot and minutes (the current branch by default), or None."""
        session_id = self.resolve_id(id_or_prefix)
        if branch is None:
            number = int(self._db.query("SELECT current_branch FROM sessions WHERE id = ?", (session_id,))[0]
                         ["current_branch"])
        else:
            number = self._branch(self._tree(session_id), session_id, branch).number
        rows = self._db.query("SELECT * FROM outcomes WHERE session_id = ? AND branch = ?", (session_id, number))
        return row_to_outcome(rows[0]) if rows else None

    def search(self, query: str, limit: int | None = 20) -> list[SearchHit]:
        return fts_search(self._db, query, limit)

    def load_for_resume(self, id_or_prefix: str) -> tuple[TownHallSpec, list[Persona], list[Turn]]:
        """What `Scheduler(engine, spec, personas, session_id=id, history=turns)` needs to go on.

        Every settled turn is returned (complete, interrupted, degenerate, failed), in
        order, so turn indices continue where they stopped; which of them go into the
        agents' prompts is the scheduler's call. A session still being recorded by a
        live process is refused: two writers would interleave one transcript.
        """
        record = self.get_session(id_or_prefix)
        if record.summary.status == "running":
            raise StoreError(
                f"session {record.id} is still running in another Townhall; stop it there before resuming"
            )
        try:
            spec = TownHallSpec.model_validate(record.spec)
        except ValueError as exc:
            raise StoreError(f"session {record.id}: its stored settings are not a valid town hall ({exc})") from None
        if not record.personas:
            raise StoreError(f"session {record.id}: no participants were recorded, it cannot be resumed")
        turns = [t for t in self.turns(record.id) if t.status != TurnStatus.STREAMING]
        return spec, list(record.personas), turns

    # -- branches ----------------------------------------------------------------------
    @staticmethod
    def _turn_at(tree: TurnTree, session_id: str, number: int, index: int) -> Turn:
        path = tree.path(number)
        if not 0 <= index < len(path):
            raise NotFoundError(
                f"session {session_id} has no turn {index} (its branch {number} has {len(path)} turns"
                + (f", numbered 0 to {len(path) - 1})" if path else ")")
            )
        return path[index]

    def turn_at(self, id_or_prefix: str, index: int, branch: int | None = None) -> Turn:
        """Turn `index` of a branch's path (the current branch by default); a clear error if none."""
        session_id = self.resolve_id(id_or_prefix)
        tree = self._tree(session_id)
        return self._turn_at(tree, session_id, self._branch(tree, session_id, branch).number, index)

    def _change_branches(self, id_or_prefix: str, at: int | None, branch: int | None,
                         change: Callable[[BranchService, int], Iterable[Event]]) -> TurnTree:
        """Apply one branch op to a stored session, as a live run does: the branch service checks
        it against the stored tree and yields its events, and the recorder writes them with the
        SQL it writes a live run's. One transaction: a refused op leaves nothing, and two writers
        never make the same branch number. `change` gets the service and the branch number."""
        with self._db.transaction():
            record = self.get_session(id_or_prefix)
            if record.summary.status == "running":
                raise StoreError(f"session {record.id} is still running in another Townhall; stop it there first")
            tree = self._tree(record.id)
            number = self._branch(tree, record.id, branch).number
            if at is not None:
                self._turn_at(tree, record.id, number, at)
            recorder = Recorder(self._db, checkpoint_s=None)
            try:
                for event in change(BranchService(tree, record.id), number):
                    recorder(event)
            except ConfigError as exc:  # a rule of the branch service: the record refuses the op
                raise StoreError(str(exc)) from None
        return tree

    def fork(self, id_or_prefix: str, at: int, branch: int | None = None) -> int:
        """A new branch sharing turns 0..`at` of `branch` (the current one); it becomes current.
        Nothing is said on it yet: resuming the session goes on from turn `at`."""
        return self._change_branches(id_or_prefix, at, branch, lambda s, n: s.fork(at, n)).current

    def edit_turn(self, id_or_prefix: str, index: int, text: str, branch: int | None = None) -> int:
        """A new branch whose turn `index` says `text`, written by the watcher; the original stays
        as its alternative. The new branch ends at the edit and becomes current."""
        return self._change_branches(id_or_prefix, index, branch, lambda s, n: s.edit(index, text, n)).current

    def switch_branch(self, id_or_prefix: str, number: int) -> None:
        """Make branch `number` current: what resume, show and export then use by default."""
        self._change_branches(id_or_prefix, None, number, lambda s, n: s.switch(n))

    # -- changing --------------------------------------------------------------------
    def insert_session(
        self,
        record: SessionRecord,
        turns: Sequence[Turn],
        *,
        stances: Sequence[StanceMeasured] = (),
        outcome: OutcomeRecord | None = None,
        branches: Sequence[Branch] = (),
    ) -> str:
        """Write a whole session at once (an import), all rows in one transaction.

        The record's id must be new; it is written as given, with no live writer, so
        nothing here marks it as being recorded. Without `branches` the turns are one
        path, linked in the order given (branch 1); with them, the turns keep their own
        nodes and parents, and `summary.current_branch` is current. Stances and the
        outcome belong to the current branch.
        """
        with self._db.transaction() as conn:
            session_insert.insert_session(conn, record, turns, stances=stances, outcome=outcome, branches=branches)
        return record.summary.id

    def rename(self, id_or_prefix: str, title: str) -> str:
        session_id = self.resolve_id(id_or_prefix)
        title = title.strip()
        if not title or "\n" in title:
            raise StoreError("a session title must be one non-empty line")
        with self._db.transaction() as conn:
            conn.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id))
        return session_id

    def delete(self, id_or_prefix: str) -> str:
        session_id = self.resolve_id(id_or_prefix)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        return session_id

    def close(self) -> None:
        """Settle what this process was recording (cut-off turns become interrupted), then close."""
        for recorder in self._recorders:
            recorder.close()
        self._recorders.clear()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
