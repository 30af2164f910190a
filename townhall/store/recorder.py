"""The event subscriber that writes a debate to the database as it happens.

Durability is per turn: a row is inserted (`streaming`) when the turn starts and
rewritten whole when it finishes or fails, each in its own transaction. Tokens are
not written one by one; the text of a turn still streaming is checkpointed at most
every `checkpoint_s` seconds, so a process killed mid-turn leaves the words said so
far, and the next open marks that turn `interrupted` (see `database.recover_interrupted`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from townhall.events import (
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
from townhall.store.database import Connection, writer_identity
from townhall.store.modelhash import model_sha256
from townhall.store.records import SessionStatus, turn_to_row, votes_to_json
from townhall.turns import Turn, TurnKind, TurnStatus

log = logging.getLogger(__name__)

_END_STATUS: dict[str, SessionStatus] = {"stopped": "stopped", "error": "failed"}


def persona_dict(persona: Any) -> dict[str, Any]:
    if isinstance(persona, BaseModel):
        return persona.model_dump(mode="json")
    if isinstance(persona, dict):
        return dict(persona)
    raise TypeError(f"participant snapshot of unexpected type {type(persona).__name__}")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class Recorder:
    """Call it with each event (it is a bus subscriber); it never raises into the debate."""

    def __init__(
        self,
        connection: Connection,
        *,
        checkpoint_s: float | None = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = connection
        self._checkpoint_s = checkpoint_s
        self._monotonic = monotonic
        self._partial: dict[tuple[str, int], list[str]] = {}
        self._last_flush: dict[tuple[str, int], float] = {}
        self.sessions: set[str] = set()  # sessions this recorder is writing

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    # -- sessions --------------------------------------------------------------
    def _on_SessionStarted(self, event: SessionStarted) -> None:
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
                    (event.session_id, spec.get("title"), str(spec.get("motion") or ""), _json(spec),
                     info.backend, info.model_name, info.model_path, sha, info.n_ctx, info.device,
                     spec.get("seed"), event.at, event.at, pid, host),
                )
                for position, persona in enumerate(event.participants):
                    data = persona_dict(persona)
                    conn.execute(
                        "INSERT INTO participants(session_id, position, name, title, color, moderator, persona) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (event.session_id, position, data.get("name"), data.get("title"), data.get("color"),
                         int(bool(data.get("moderator"))), _json(data)),
                    )
            self._event(conn, event.session_id, event.at, "resumed_session" if exists else "started", {})
        self.sessions.add(event.session_id)

    def _on_SessionEnded(self, event: SessionEnded) -> None:
        status = _END_STATUS.get(event.reason, "finished")
        with self._db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM sessions WHERE id = ?", (event.session_id,)).fetchone():
                return  # it never started (the model failed to load): nothing to keep
            conn.execute(
                "UPDATE sessions SET status = ?, end_reason = ?, error = ?, ended_at = ?, updated_at = ?, "
                "writer_pid = NULL WHERE id = ?",
                (status, event.reason, event.error, event.at, event.at, event.session_id),
            )
            self._event(conn, event.session_id, event.at, "ended",
                        {"reason": event.reason, "turns": event.turns, "error": event.error})
        self.sessions.discard(event.session_id)

    # -- turns -----------------------------------------------------------------
    def _on_TurnStarted(self, event: TurnStarted) -> None:
        turn = Turn(index=event.index, speaker=event.speaker, kind=TurnKind(event.kind),
                    status=TurnStatus.STREAMING, started_at=event.at)
        key = (event.session_id, event.index)
        self._partial[key] = []
        self._last_flush[key] = self._monotonic()
        self._write_turn(event.session_id, turn, event.at)

    def _on_TokenStreamed(self, event: TokenStreamed) -> None:
        key = (event.session_id, event.index)
        pieces = self._partial.setdefault(key, [])
        pieces.append(event.text)
        if self._checkpoint_s is None:
            return
        now = self._monotonic()
        if now - self._last_flush.get(key, now) >= self._checkpoint_s:
            self._last_flush[key] = now
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE turns SET content = ? WHERE session_id = ? AND turn_index = ? AND status = 'streaming'",
                    ("".join(pieces), event.session_id, event.index),
                )

    def _on_TurnFinished(self, event: TurnFinished) -> None:
        self._settle(event.session_id, event.turn, None)

    def _on_TurnFailed(self, event: TurnFailed) -> None:
        turn = event.turn
        if turn.status != TurnStatus.FAILED:
            turn = Turn(**{**turn.__dict__, "status": TurnStatus.FAILED})
        self._settle(event.session_id, turn, event.error)

    def _settle(self, session_id: str, turn: Turn, error: str | None) -> None:
        self._partial.pop((session_id, turn.index), None)
        self._last_flush.pop((session_id, turn.index), None)
        at = turn.finished_at or turn.started_at or time.time()
        self._write_turn(session_id, turn, at, error_event=error)

    def _write_turn(self, session_id: str, turn: Turn, at: float, error_event: str | None = None) -> None:
        row = turn_to_row(session_id, turn)
        columns = list(row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("session_id", "turn_index"))
        sql = (
            f"INSERT INTO turns({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT(session_id, turn_index) DO UPDATE SET {updates}"
        )
        with self._db.transaction() as conn:
            self._ensure_session(conn, session_id, at)
            conn.execute(sql, tuple(row.values()))
            conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (at, session_id))
            if error_event is not None:
                self._event(conn, session_id, at, "error",
                            {"turn_index": turn.index, "speaker": turn.speaker, "error": error_event})

    # -- other events worth keeping ----------------------------------------------
    def _on_Paused(self, event: Paused) -> None:
        self._simple_event(event.session_id, event.at, "paused", {})

    def _on_Resumed(self, event: Resumed) -> None:
        self._simple_event(event.session_id, event.at, "resumed", {})

    def _on_StrategyApplied(self, event: StrategyApplied) -> None:
        self._simple_event(event.session_id, event.at, "strategy",
                           {"agent": event.agent, "strategy": event.strategy, "detail": event.detail})

    # -- the stance probe, the ballot, the minutes ------------------------------------
    def _on_StanceMeasured(self, event: StanceMeasured) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            conn.execute(
                "INSERT INTO stances(session_id, round, turn_index, agent, p_for, method, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.session_id, event.round, event.turn_index, event.agent, event.p_for, event.method, event.at),
            )

    def _on_OutcomeDecided(self, event: OutcomeDecided) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            conn.execute(
                "INSERT INTO outcomes(session_id, votes, votes_for, votes_against, result, announcement, decided_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET votes = excluded.votes, "
                "votes_for = excluded.votes_for, votes_against = excluded.votes_against, result = excluded.result, "
                "announcement = excluded.announcement, decided_at = excluded.decided_at",
                (event.session_id, votes_to_json(event.votes), event.votes_for, event.votes_against, event.result,
                 event.announcement, event.at),
            )
            self._event(conn, event.session_id, event.at, "outcome",
                        {"result": event.result, "for": event.votes_for, "against": event.votes_against})

    def _on_MinutesWritten(self, event: MinutesWritten) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            conn.execute(
                "INSERT INTO outcomes(session_id, minutes, minutes_at) VALUES (?, ?, ?) "
                "ON CONFLICT(session_id) DO UPDATE SET minutes = excluded.minutes, minutes_at = excluded.minutes_at",
                (event.session_id, event.text, event.at),
            )

    def _simple_event(self, session_id: str, at: float, kind: str, detail: dict[str, Any]) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, session_id, at)
            self._event(conn, session_id, at, kind, detail)

    @staticmethod
    def _event(conn: sqlite3.Connection, session_id: str, at: float, kind: str, detail: dict[str, Any]) -> None:
        conn.execute("INSERT INTO events(session_id, at, type, detail) VALUES (?, ?, ?, ?)",
                     (session_id, at, kind, _json(detail)))

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

    # -- shutdown ----------------------------------------------------------------
    def close(self, now: float | None = None) -> None:
        """The app is closing mid-debate: keep what was said, mark the cut-off turns interrupted."""
        now = time.time() if now is None else now
        for (session_id, index), pieces in list(self._partial.items()):
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE turns SET content = ?, status = 'interrupted', finished_at = ?, "
                    "finish_reason = COALESCE(finish_reason, 'cancelled') "
                    "WHERE session_id = ? AND turn_index = ? AND status = 'streaming'",
                    ("".join(pieces), now, session_id, index),
                )
        self._partial.clear()
        for session_id in list(self.sessions):
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE sessions SET status = 'interrupted', end_reason = COALESCE(end_reason, 'closed'), "
                    "updated_at = ?, writer_pid = NULL WHERE id = ? AND status = 'running'",
                    (now, session_id),
                )
        self.sessions.clear()
