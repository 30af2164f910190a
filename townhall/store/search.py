"""Full-text search over every turn (SQLite FTS5), with highlighted snippets.

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


def search(connection: Connection, query: str, limit: int | None = 20) -> list[SearchHit]:
    """Turns matching `query` (FTS5 syntax: words, "phrases", OR, NOT, prefix*, speaker:NAME)."""
    if not query.strip():
        raise SearchQueryError("search query is empty; give one or more words to look for")
    sql = (
        "SELECT t.session_id, COALESCE(s.title, s.motion) AS label, t.turn_index, t.speaker, t.kind, "
        "t.started_at, snippet(turns_fts, 0, ?, ?, '…', 16) AS marked "
        "FROM turns_fts JOIN turns t ON t.id = turns_fts.rowid JOIN sessions s ON s.id = t.session_id "
        "WHERE turns_fts MATCH ? ORDER BY rank, t.started_at DESC"
    )
    params: tuple = (_OPEN, _CLOSE, query)
    if limit is not None:
        sql += " LIMIT ?"
        params += (int(limit),)
    try:
        rows = connection.query(sql, params)
    except sqlite3.OperationalError as exc:
        raise SearchQueryError(
            f"search query {query!r} is not valid FTS5 syntax ({exc}); "
            'put words in double quotes to search for them literally, e.g. \'"don\'t"\''
        ) from None
    hits = []
    for row in rows:
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
            )
        )
    return hits
