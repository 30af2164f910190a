"""The statements that write the rows more than one writer fills: turns, branches, participants,
events, stances, outcomes and the current branch.

Both the recorder (a live debate, and the CLI's branch ops replayed as events) and an import
(`Store.insert_session`) write these tables; each row is written by the one statement here,
so a column added to a table is added in one place. Every function runs inside the caller's
transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from townhall.domain.branches import Branch
from townhall.domain.events import StanceMeasured
from townhall.domain.turns import Turn
from townhall.store.records import OutcomeRecord, turn_to_row, votes_to_json


def to_json(value: Any) -> str:
    """JSON text for a TEXT column: readable non-ASCII, and anything unusual as its string."""
    return json.dumps(value, ensure_ascii=False, default=str)


def write_turn(conn: sqlite3.Connection, session_id: str, turn: Turn, *, rewrite: bool = True) -> None:
    """Insert the turn's row, or (`rewrite`) rewrite the one with its node, whose place in the tree
    stays; without `rewrite` a second row with the node is an error (an import of a bad file).

    The `turns_tree` trigger adds a missing branch row and moves the branch head on insert."""
    row = turn_to_row(session_id, turn)
    columns = list(row)
    fixed = ("session_id", "node", "parent", "branch", "turn_index")
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in fixed)
    conflict = f" ON CONFLICT(session_id, node) DO UPDATE SET {updates}" if rewrite else ""
    conn.execute(
        f"INSERT INTO turns({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}){conflict}",
        tuple(row.values()),
    )


def insert_branch(conn: sqlite3.Connection, session_id: str, branch: Branch, *, replace: bool = False) -> bool:
    """Add a branch row; True if it was added. An existing row with its number is kept as it
    was, unless `replace` (an import, whose turns' trigger made bare rows first) rewrites it."""
    on_conflict = ("DO UPDATE SET parent = excluded.parent, fork = excluded.fork, head = excluded.head, "
                   "reason = excluded.reason, created_at = excluded.created_at") if replace else "DO NOTHING"
    cursor = conn.execute(
        "INSERT INTO branches(session_id, number, parent, fork, head, reason, created_at) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, number) {on_conflict}",
        (session_id, branch.number, branch.parent, branch.fork, branch.head, branch.reason, branch.created_at),
    )
    return bool(cursor.rowcount)


def ensure_first_branch(conn: sqlite3.Connection, session_id: str, at: float) -> None:
    """Every session has a branch 1, even before anything is said on it."""
    conn.execute("INSERT OR IGNORE INTO branches(session_id, number, created_at) VALUES (?, 1, ?)", (session_id, at))


def set_current_branch(conn: sqlite3.Connection, session_id: str, number: int, at: float) -> None:
    conn.execute("UPDATE sessions SET current_branch = ?, updated_at = ? WHERE id = ?", (number, at, session_id))


def current_branch(conn: sqlite3.Connection, session_id: str) -> int:
    row = conn.execute("SELECT current_branch FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return int(row[0]) if row else 1


def insert_participants(conn: sqlite3.Connection, session_id: str, personas: list[Mapping[str, Any]]) -> None:
    """The cast in speaking order, each with its whole persona snapshot as JSON."""
    for position, data in enumerate(personas):
        conn.execute(
            "INSERT INTO participants(session_id, position, name, title, color, moderator, persona) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, position, data.get("name"), data.get("title"), data.get("color"),
             int(bool(data.get("moderator"))), to_json(dict(data))),
        )


def add_event(conn: sqlite3.Connection, session_id: str, at: float, kind: str, detail: Mapping[str, Any]) -> None:
    """One line of the session's event log (`events` table: started, branch, switch, outcome, ...)."""
    conn.execute("INSERT INTO events(session_id, at, type, detail) VALUES (?, ?, ?, ?)",
                 (session_id, at, kind, to_json(dict(detail))))


def insert_stance(conn: sqlite3.Connection, session_id: str, stance: StanceMeasured, branch: int) -> None:
    """A stance reading, kept against the branch current when it was read."""
    conn.execute(
        "INSERT INTO stances(session_id, round, turn_index, agent, p_for, method, at, branch) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (session_id, stance.round, stance.turn_index, stance.agent, stance.p_for, stance.method, stance.at, branch),
    )


def upsert_ballot(conn: sqlite3.Connection, session_id: str, branch: int, outcome: OutcomeRecord) -> None:
    """A branch's closing ballot (a new vote replaces the old one); its minutes are kept."""
    conn.execute(
        "INSERT INTO outcomes(session_id, branch, votes, votes_for, votes_against, result, announcement, "
        "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, branch) DO UPDATE SET "
        "votes = excluded.votes, votes_for = excluded.votes_for, votes_against = excluded.votes_against, "
        "result = excluded.result, announcement = excluded.announcement, decided_at = excluded.decided_at",
        (session_id, branch, votes_to_json(outcome.votes) if outcome.result else None, outcome.votes_for,
         outcome.votes_against, outcome.result, outcome.announcement, outcome.decided_at),
    )


def upsert_minutes(conn: sqlite3.Connection, session_id: str, branch: int, text: str | None, at: float | None) -> None:
    """A branch's minutes, beside (or before) its ballot."""
    conn.execute(
        "INSERT INTO outcomes(session_id, branch, minutes, minutes_at) VALUES (?, ?, ?, ?) ON CONFLICT(session_id, "
        "branch) DO UPDATE SET minutes = excluded.minutes, minutes_at = excluded.minutes_at",
        (session_id, branch, text, at),
    )
