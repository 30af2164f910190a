"""The event subscriber that writes a debate to the database as it happens.

Durability is per turn: a row is inserted (`streaming`) when the turn starts and
rewritten whole when it finishes or fails, each in its own transaction. Tokens are
not written one by one; the text of a turn still streaming is checkpointed at most
every `checkpoint_s` seconds, so a process killed mid-turn leaves the words said so
far, and the next open marks that turn `interrupted` (see `database.recover_interrupted`).

Turns are keyed by their node in the session's tree (`TurnStarted.node`), since
alternatives share an index; BranchCreated adds a `branches` row, BranchSwitched moves
`sessions.current_branch`, and stances and outcomes are kept against the branch current
when they happen. A branch's head follows its new turns by the `turns_tree` trigger.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

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
from townhall.store.database import Connection, writer_identity
from townhall.store.modelhash import model_sha256
from townhall.store.records import SessionStatus, turn_to_row, votes_to_json
from townhall.domain.turns import Turn, TurnKind, TurnStatus, new_node_id

log = logging.getLogger(__name__)

_END_STATUS: dict[str, SessionStatus] = {"stopped": "stopped", "error": "failed"}


def persona_dict(persona: Any) -> dict[str, Any]:
    if isinstance(persona, BaseModel):
        return persona.model_dump(mode="json")
    if isinstance(persona, dict):
        return dict(persona)
    raise TypeError(f"participant snapshot of unexpected type {type(persona).__name__}")


def _current_branch(conn: sqlite3.Connection, session_id: str) -> int:
    row = conn.execute("SELECT current_branch FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return int(row[0]) if row else 1


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
        # Streaming turns: (session, index) -> node, since TokenStreamed carries only the index;
        # the words so far and the last checkpoint per (session, node).
        self._streaming: dict[tuple[str, int], str] = {}
        self._partial: dict[tuple[str, str], list[str]] = {}
        self._last_flush: dict[tuple[str, str], float] = {}
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
                conn.execute("INSERT OR IGNORE INTO branches(session_id, number, created_at) VALUES (?, 1, ?)",
                             (event.session_id, event.at))
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

    def _on_TokenStreamed(self, event: TokenStreamed) -> None:
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

    def _on_TurnFinished(self, event: TurnFinished) -> None:
        self._settle(event.session_id, event.turn, None)

    def _on_TurnFailed(self, event: TurnFailed) -> None:
        turn = event.turn
        if turn.status != TurnStatus.FAILED:
            turn = replace(turn, status=TurnStatus.FAILED)
        self._settle(event.session_id, turn, event.error)

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
                self._event(conn, session_id, at, "error",
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
        current = _current_branch(conn, session_id)
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

    def _upsert(self, conn: sqlite3.Connection, session_id: str, turn: Turn, at: float) -> None:
        """Insert the turn's row, or rewrite the one with its node (its place in the tree stays)."""
        row = turn_to_row(session_id, turn)
        columns = list(row)
        fixed = ("session_id", "node", "parent", "branch", "turn_index")
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in fixed)
        conn.execute(
            f"INSERT INTO turns({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT(session_id, node) DO UPDATE SET {updates}",
            tuple(row.values()),
        )
        conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (at, session_id))

    # -- branches ------------------------------------------------------------------
    def _on_BranchCreated(self, event: BranchCreated) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            added = conn.execute(
                "INSERT INTO branches(session_id, number, parent, fork, head, reason, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, number) DO NOTHING",
                (event.session_id, event.branch, event.parent, event.fork, event.fork, event.reason, event.at),
            ).rowcount
            if not added:  # a scheduler that was not given the stored tree: never rewrite a kept branch
                log.warning("session %s: branch %d already exists; its record is kept as it was",
                            event.session_id, event.branch)
            conn.execute("UPDATE sessions SET current_branch = ?, updated_at = ? WHERE id = ?",
                         (event.branch, event.at, event.session_id))
            self._event(conn, event.session_id, event.at, "branch",
                        {"branch": event.branch, "parent": event.parent, "fork": event.fork, "reason": event.reason})

    def _on_BranchSwitched(self, event: BranchSwitched) -> None:
        head = event.turns[-1].node if event.turns else None
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            conn.execute("INSERT OR IGNORE INTO branches(session_id, number, head, created_at) VALUES (?, ?, ?, ?)",
                         (event.session_id, event.branch, head, event.at))
            conn.execute("UPDATE sessions SET current_branch = ?, updated_at = ? WHERE id = ?",
                         (event.branch, event.at, event.session_id))
            self._event(conn, event.session_id, event.at, "switch", {"branch": event.branch})

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
                "INSERT INTO stances(session_id, round, turn_index, agent, p_for, method, at, branch) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event.session_id, event.round, event.turn_index, event.agent, event.p_for, event.method, event.at,
                 _current_branch(conn, event.session_id)),
            )

    def _on_OutcomeDecided(self, event: OutcomeDecided) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            conn.execute(
                "INSERT INTO outcomes(session_id, branch, votes, votes_for, votes_against, result, announcement, "
                "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, branch) DO UPDATE SET "
                "votes = excluded.votes, "
                "votes_for = excluded.votes_for, votes_against = excluded.votes_against, result = excluded.result, "
                "announcement = excluded.announcement, decided_at = excluded.decided_at",
                (event.session_id, _current_branch(conn, event.session_id), votes_to_json(event.votes),
                 event.votes_for, event.votes_against, event.result, event.announcement, event.at),
            )
            self._event(conn, event.session_id, event.at, "outcome",
                        {"result": event.result, "for": event.votes_for, "against": event.votes_against})

    def _on_MinutesWritten(self, event: MinutesWritten) -> None:
        with self._db.transaction() as conn:
            self._ensure_session(conn, event.session_id, event.at)
            conn.execute(
                "INSERT INTO outcomes(session_id, branch, minutes, minutes_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(session_id, branch) DO UPDATE SET minutes = excluded.minutes, minutes_at = excluded.minutes_at",
                (event.session_id, _current_branch(conn, event.session_id), event.text, event.at),
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
        conn.execute("INSERT OR IGNORE INTO branches(session_id, number, created_at) VALUES (?, 1, ?)", (session_id, at))

    # -- shutdown ----------------------------------------------------------------
    def close(self, now: float | None = None) -> None:
        """The app is closing mid-debate: keep what was said, mark the cut-off turns interrupted."""
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
