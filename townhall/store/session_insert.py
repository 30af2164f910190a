"""Writing a whole session at once (an import), through the same row writers as the recorder."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from townhall.domain.branches import Branch
from townhall.domain.events import StanceMeasured
from townhall.domain.turns import Turn
from townhall.errors import StoreError
from townhall.store import rows
from townhall.store.records import OutcomeRecord, SessionRecord


def _linked(turns: Sequence[Turn]) -> list[Turn]:
    """A plain transcript as one path on branch 1, each turn after the one before it."""
    placed, previous = [], None
    for turn in turns:
        placed.append(replace(turn, parent=previous, branch=1))
        previous = turn.node
    return placed


def _insert_session_row(conn: sqlite3.Connection, record: SessionRecord) -> None:
    summary = record.summary
    if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (summary.id,)).fetchone():
        raise StoreError(f"a session with id {summary.id} already exists")
    conn.execute(
        "INSERT INTO sessions(id, title, motion, spec, backend, model_name, model_path, model_sha256, "
        "n_ctx, device, seed, created_at, updated_at, ended_at, status, end_reason, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (summary.id, summary.title, summary.motion, rows.to_json(record.spec),
         record.backend, summary.model_name, record.model_path, record.model_sha256, record.n_ctx,
         record.device, record.seed, summary.created_at, summary.updated_at, summary.ended_at,
         summary.status, summary.end_reason, record.error),
    )


def insert_session(
    conn: sqlite3.Connection,
    record: SessionRecord,
    turns: Sequence[Turn],
    *,
    stances: Sequence[StanceMeasured] = (),
    outcome: OutcomeRecord | None = None,
    branches: Sequence[Branch] = (),
) -> None:
    """All rows of one session, inside the caller's transaction (see `Store.insert_session`).

    Turns go first: the `turns_tree` trigger makes bare branch rows and moves their heads as
    they come, then the branches given replace those rows whole."""
    summary = record.summary
    current = summary.current_branch if branches else 1
    _insert_session_row(conn, record)
    rows.insert_participants(conn, summary.id, [p.model_dump(mode="json") for p in record.personas])
    for turn in turns if branches else _linked(turns):
        rows.write_turn(conn, summary.id, turn, rewrite=False)
    for branch in branches:
        rows.insert_branch(conn, summary.id, branch, replace=True)
    rows.ensure_first_branch(conn, summary.id, summary.created_at)
    conn.execute("UPDATE sessions SET current_branch = ? WHERE id = ?", (current, summary.id))
    for event in record.events:
        rows.add_event(conn, summary.id, event.at, event.type, event.detail)
    for stance in stances:
        rows.insert_stance(conn, summary.id, stance, current)
    if outcome is not None:
        rows.upsert_ballot(conn, summary.id, current, outcome)
        rows.upsert_minutes(conn, summary.id, current, outcome.minutes, outcome.minutes_at)
