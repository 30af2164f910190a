"""The model file's sha256, cached in the database by path, size and mtime.

Hashing the embedded 253 MB model takes about a second; a session records it so a
transcript says exactly which weights spoke, but that second is paid once per file
version, not once per session.
"""

from __future__ import annotations

import logging
from pathlib import Path

from townhall.engine.model_file import sha256_file
from townhall.store.database import Connection

log = logging.getLogger(__name__)


def model_sha256(connection: Connection, model_path: str | None) -> str | None:
    """sha256 of `model_path` when it is a readable file, else None (a server model)."""
    if not model_path:
        return None
    path = Path(model_path)
    try:
        if not path.is_file():
            return None
        stat = path.stat()
        key = str(path.resolve())
    except OSError:
        return None
    rows = connection.query(
        "SELECT sha256 FROM model_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
        (key, stat.st_size, stat.st_mtime_ns),
    )
    if rows:
        return rows[0]["sha256"]
    try:
        digest = sha256_file(path)
    except OSError as exc:
        log.warning("cannot hash model file %s: %s", path, exc)
        return None
    with connection.transaction() as conn:
        conn.execute(
            "INSERT INTO model_hashes(path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "sha256 = excluded.sha256",
            (key, stat.st_size, stat.st_mtime_ns, digest),
        )
    return digest
