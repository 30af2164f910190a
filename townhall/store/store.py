"""`Store`: the one object the CLI and the TUI use to keep and read the record."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from townhall.errors import NotFoundError, StoreError
from townhall.events import StanceMeasured, Subscriber
from townhall.paths import default_db_path
from townhall.personas import Persona
from townhall.spec import TownHallSpec
from townhall.store import database
from townhall.store.database import Connection
from townhall.store.recorder import Recorder
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
    turn_to_row,
    votes_to_json,
)
from townhall.store.search import search as fts_search
from townhall.turns import Turn, TurnStatus


class Subscribable(Protocol):
    """Whatever publishes the debate's events: a Scheduler or an EventBus."""

    def subscribe(self, fn: Subscriber) -> Callable[[], None]: ...


_SUMMARY_SQL = (
    "SELECT s.*, (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id) AS turn_count, "
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
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Store:
    """The SQLite record of every town hall. Open with `Store.open(path)`; see the package docs."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection
        self._recorders: list[Recorder] = []

    @classmethod
    def open(cls, path: Path | str | None = None) -> Store:
        """Open (create, migrate, recover) the database at `path`, default `paths.default_db_path()`."""
        return cls(database.connect(Path(path) if path is not None else default_db_path()))

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
    def attach(self, source: Subscribable, *, checkpoint_s: float | None = 2.0) -> Callable[[], None]:
        """Record every event of a scheduler (or an EventBus) from now on; returns unsubscribe."""
        recorder = Recorder(self._db, checkpoint_s=checkpoint_s)
        self._recorders.append(recorder)
        unsubscribe = source.subscribe(recorder)

        def detach() -> None:
            unsubscribe()
            if recorder in self._recorders:
                self._recorders.remove(recorder)

        return detach

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
            for e in self._db.query("SELECT at, type, detail FROM events WHERE session_id = ? ORDER BY id", (session_id,))
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

    def turns(self, session_id: str) -> list[Turn]:
        session_id = self.resolve_id(session_id)
        rows = self._db.query("SELECT * FROM turns WHERE session_id = ? ORDER BY turn_index", (session_id,))
        return [row_to_turn(row) for row in rows]

    def stances_of(self, id_or_prefix: str) -> list[StanceMeasured]:
        """Every stance reading of a session, in the order taken (turn, then the probe's order)."""
        session_id = self.resolve_id(id_or_prefix)
        rows = self._db.query("SELECT * FROM stances WHERE session_id = ? ORDER BY turn_index, id", (session_id,))
        return [row_to_stance(row) for row in rows]

    def outcome_of(self, id_or_prefix: str) -> OutcomeRecord | None:
        """The session's closing ballot and minutes, or None when it has neither."""
        session_id = self.resolve_id(id_or_prefix)
        rows = self._db.query("SELECT * FROM outcomes WHERE session_id = ?", (session_id,))
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

    # -- changing --------------------------------------------------------------------
    def insert_session(
        self,
        record: SessionRecord,
        turns: Sequence[Turn],
        *,
        stances: Sequence[StanceMeasured] = (),
        outcome: OutcomeRecord | None = None,
    ) -> str:
        """Write a whole session at once (an import), all rows in one transaction.

        The record's id must be new; it is written as given, with no live writer, so
        nothing here marks it as being recorded.
        """
        summary = record.summary
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (summary.id,)).fetchone():
                raise StoreError(f"a session with id {summary.id} already exists")
            conn.execute(
                "INSERT INTO sessions(id, title, motion, spec, backend, model_name, model_path, model_sha256, "
                "n_ctx, device, seed, created_at, updated_at, ended_at, status, end_reason, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (summary.id, summary.title, summary.motion, json.dumps(record.spec, ensure_ascii=False),
                 record.backend, summary.model_name, record.model_path, record.model_sha256, record.n_ctx,
                 record.device, record.seed, summary.created_at, summary.updated_at, summary.ended_at,
                 summary.status, summary.end_reason, record.error),
            )
            for position, persona in enumerate(record.personas):
                conn.execute(
                    "INSERT INTO participants(session_id, position, name, title, color, moderator, persona) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (summary.id, position, persona.name, persona.title, persona.color, int(persona.moderator),
                     persona.model_dump_json()),
                )
            for turn in turns:
                row = turn_to_row(summary.id, turn)
                conn.execute(
                    f"INSERT INTO turns({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                    tuple(row.values()),
                )
            for event in record.events:
                conn.execute(
                    "INSERT INTO events(session_id, at, type, detail) VALUES (?, ?, ?, ?)",
                    (summary.id, event.at, event.type, json.dumps(event.detail, ensure_ascii=False)),
                )
            for stance in stances:
                conn.execute(
                    "INSERT INTO stances(session_id, round, turn_index, agent, p_for, method, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (summary.id, stance.round, stance.turn_index, stance.agent, stance.p_for, stance.method, stance.at),
                )
            if outcome is not None:
                conn.execute(
                    "INSERT INTO outcomes(session_id, votes, votes_for, votes_against, result, announcement, "
                    "decided_at, minutes, minutes_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (summary.id, votes_to_json(outcome.votes) if outcome.result else None, outcome.votes_for,
                     outcome.votes_against, outcome.result, outcome.announcement, outcome.decided_at,
                     outcome.minutes, outcome.minutes_at),
                )
        return summary.id

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
