"""Full-text search over every turn on every branch (SQLite FTS5), with highlighted snippets.

The snippet is marked with two private-use characters instead of markup, then turned
into plain text plus (start, end) spans: model text is untrusted and must never be
read as markup, and a bracket the model wrote must not look like a highlight.
"""

from __future__ import annotations

import sqlite3

from townhall.errors import TownhallError
from townhall.store.database import Connection
from townhall.store.records import SearchHit

_OPEN, _CLOSE = "\ue000", "\ue001"


class SearchQueryError(TownhallError):
    """The search text is not a valid FTS5 query."""


def parse_snippet(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Split an FTS5 snippet marked with _OPEN/_CLOSE into text and highlight spans."""
    text: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for ch in marked:
        if ch == _OPEN:
            start = length
        elif ch == _CLOSE:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            text.append(ch)
            length += 1
    return "".join(text), tuple(spans)


MINUTES_KIND = "minutes"  # a hit in a session's minutes: kind "minutes", speaker "Minutes", turn_index -1
_TURNS_SQL = (
    "SELECT t.session_id, COALESCE(s.title, s.motion) AS label, t.turn_index, t.speaker, t.kind, "
    "t.started_at, t.node, t.branch, snippet(turns_fts, 0, ?, ?, '…', 16) AS marked, rank "
    "FROM turns_fts JOIN turns t ON t.id = turns_fts.rowid JOIN sessions s ON s.id = t.session_id "
    "WHERE turns_fts MATCH ? ORDER BY rank, t.started_at DESC"
)
# speaker:NAME means a turn's speaker: a query naming a column is for turns only.
_MINUTES_SQL = (
    "SELECT o.session_id, COALESCE(s.title, s.motion) AS label, -1 AS turn_index, 'Minutes' AS speaker, "
    f"'{MINUTES_KIND}' AS kind, o.minutes_at AS started_at, NULL AS node, o.branch, "
    "snippet(minutes_fts, 0, ?, ?, '…', 16) AS marked, rank "
    "FROM minutes_fts JOIN outcomes o ON o.id = minutes_fts.rowid JOIN sessions s ON s.id = o.session_id "
    "WHERE minutes_fts MATCH ? ORDER BY rank"
)


def _run(connection: Connection, sql: str, query: str, limit: int | None) -> list[dict]:
    params: tuple = (_OPEN, _CLOSE, query)
    if limit is not None:
        sql += " LIMIT ?"
        params += (int(limit),)
    try:
        return connection.query(sql, params)
    except sqlite3.OperationalError as exc:
        raise SearchQueryError(
            f"search query {query!r} is not valid FTS5 syntax ({exc}); "
            'put words in double quotes to search for them literally, e.g. \'"don\'t"\''
        ) from None


def search(connection: Connection, query: str, limit: int | None = 20) -> list[SearchHit]:
    """Turns and minutes matching `query` (FTS5 syntax: words, "phrases", OR, NOT, prefix*,
    speaker:NAME), best first."""
    if not query.strip():
        raise SearchQueryError("search query is empty; give one or more words to look for")
    rows = _run(connection, _TURNS_SQL, query, limit)
    if ":" not in query:
        rows = sorted(rows + _run(connection, _MINUTES_SQL, query, limit), key=lambda r: r["rank"])
        if limit is not None:
            rows = rows[: int(limit)]
    holding = _branches_holding(connection, {r["session_id"] for r in rows if r["node"] is not None})
    hits = []
    for row in rows:
        branch = int(row["branch"] or 1)
        on = holding.get((row["session_id"], row["node"]), ()) if row["node"] is not None else ()
        snippet, spans = parse_snippet(row["marked"] or "")
        hits.append(
            SearchHit(
                session_id=row["session_id"],
                session_label=row["label"] or "",
                turn_index=int(row["turn_index"]),
                speaker=row["speaker"],
                kind=row["kind"],
                snippet=snippet,
                highlights=spans,
                started_at=row["started_at"],
                branch=branch,
                branches=on or (branch,),
            )
        )
    return hits


def _branches_holding(connection: Connection, sessions: set[str]) -> dict[tuple[str, str], tuple[int, ...]]:
    """(session, node) -> every branch whose path goes through that turn, for the hit sessions."""
    held: dict[tuple[str, str], list[int]] = {}
    for session_id in sessions:
        parents = {r["node"]: r["parent"] for r in
                   connection.query("SELECT node, parent FROM turns WHERE session_id = ?", (session_id,))}
        for b in connection.query("SELECT number, head FROM branches WHERE session_id = ? ORDER BY number",
                                  (session_id,)):
            node, seen = b["head"], set()
            while node is not None and node not in seen:
                seen.add(node)
                held.setdefault((session_id, node), []).append(int(b["number"]))
                node = parents.get(node)
    return {key: tuple(numbers) for key, numbers in held.items()}
