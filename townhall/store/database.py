"""Opening the database: pragmas, ordered migrations, and recovery of cut-off turns.

Migrations are the SQL files in the packaged `db/` folder, named `NNN_what.sql`;
file NNN takes the database to `PRAGMA user_version` NNN. Each one runs in its own
transaction together with the version bump, so a crash mid-upgrade leaves the old
version intact. A database newer than the newest file is refused rather than
guessed at: an older Townhall must never rewrite a newer one's data.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from townhall.errors import StoreError
from townhall.paths import data_dir

_MIGRATION_NAME = re.compile(r"^(\d{3})_[A-Za-z0-9_]+\.sql$")
BUSY_TIMEOUT_MS = 5000
READ_BUSY_TIMEOUT_MS = 1000  # a reader in WAL mode waits only while SQLite recovers the shared index


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files, in version order; gaps or duplicates are a packaging bug."""
    folder = folder or data_dir("db")
    found = []
    for path in folder.glob("*.sql"):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path))
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise StoreError(f"{folder}: schema migrations are not numbered 001..{len(found):03d} without gaps")
    return found


def latest_version(folder: Path | None = None) -> int:
    return len(migrations(folder))


class Connection:
    """A sqlite-utils database plus a lock and an explicit-transaction helper.

    The connection runs in autocommit mode (`isolation_level=None`) so that every
    write happens inside a `transaction()` we opened ourselves: one turn, one commit.
    It may be shared across threads (the TUI reads from workers); the lock keeps
    one statement sequence at a time.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        self._depth = 0  # transactions open on the thread holding the lock
        self._identity = _file_identity(path)

    def check_file(self) -> None:
        """OSError when the database file this connection opened is no longer at its path.

        SQLite in WAL mode goes on writing to a file that was deleted (or replaced) under it,
        without an error: every turn after that would vanish when the process ends. Checked
        before each write of the record, it costs one stat call."""
        if self._identity is None:
            return
        now = _file_identity(self.path)
        if now != self._identity:
            what = "deleted" if now is None else "replaced by another file"
            raise OSError(errno.ENOENT, f"the database file was {what} while the session ran")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. Opened inside another on this thread, it is part of that one:
        a branch op replays several events through the recorder and commits them all or none."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # SQLite has already rolled back on SQLITE_FULL and some I/O errors
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        with self.lock:
            return list(self.db.query(sql, params))

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def connect(path: Path, *, folder: Path | None = None) -> Connection:
    """Open (creating it and its folder if needed), set pragmas, migrate, recover."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a database file (pass --db FILE)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path.parent}: cannot create the database folder ({exc.strerror})") from None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # FULL: a finished turn is on disk before the next one starts; turns are seconds apart.
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the database ({exc})") from None
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"{path}: cannot switch the database to WAL mode (journal_mode is {mode})")
    connection = Connection(path, conn)
    try:
        migrate(connection, folder)
        recover_interrupted(connection)
    except BaseException:
        conn.close()
        raise
    return connection


def connect_read_only(path: Path) -> Connection:
    """Open an existing database for reading only: no folder made, no pragma that writes, no
    migration, no recovery (a watcher must never mark the writer's streaming turn interrupted).
    Any write through it fails with SQLITE_READONLY; in WAL mode it never blocks the writer."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StoreError(f"{path}: no database here (start a debate with `townhall run --db {path}`)")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False, timeout=READ_BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")
        version = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the database for reading ({exc})") from None
    latest = latest_version()
    if version != latest:
        conn.close()
        why = "newer than this Townhall understands" if version > latest else "older: open it once with `townhall`"
        raise StoreError(f"{path}: database schema version {version} is {why} (this Townhall reads {latest})")
    return Connection(path, conn)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection: Connection, folder: Path | None = None) -> int:
    """Apply every migration newer than the database, in order; return the final version."""
    steps = migrations(folder)
    latest = len(steps)
    conn = connection.conn
    with connection.lock:
        current = schema_version(conn)
        if current > latest:
            raise StoreError(
                f"{connection.path}: database schema version {current} is newer than this Townhall "
                f"understands ({latest}); upgrade Townhall or use another --db"
            )
        for step in steps[current:]:
            try:
                # executescript runs the whole file; BEGIN/COMMIT make it one transaction
                # with the version bump, so a failed step leaves the previous version.
                conn.executescript(f"BEGIN IMMEDIATE;\n{step.sql()}\nPRAGMA user_version = {step.version};\nCOMMIT;")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(
                    f"{connection.path}: upgrading the database to schema {step.version} failed ({exc})"
                ) from None
        return schema_version(conn)


def writer_identity() -> tuple[int, str]:
    return os.getpid(), socket.gethostname()


def writer_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether the process recording a session still runs: None when this host cannot tell
    (no pid recorded, or another host's process)."""
    if pid is None or host != writer_identity()[1]:
        return None
    return _process_alive(int(pid))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def recover_interrupted(connection: Connection, now: float | None = None) -> int:
    """Mark turns left `streaming` by a dead process as `interrupted`; return how many.

    A second reader may open the database while a debate runs, so only sessions
    whose recording process is gone (same host, pid not alive) or unknown are
    touched; a live writer's streaming turn is left alone.
    """
    now = time.time() if now is None else now
    rows = connection.query(
        "SELECT id, writer_pid, writer_host FROM sessions WHERE status = 'running' "
        "OR id IN (SELECT session_id FROM turns WHERE status = 'streaming')"
    )
    dead = []
    for row in rows:
        if row["writer_pid"] is None or writer_alive(row["writer_pid"], row["writer_host"]) is False:
            dead.append(row["id"])
    changed = 0
    for session_id in dead:
        with connection.transaction() as conn:
            changed += conn.execute(
                "UPDATE turns SET status = 'interrupted', finished_at = COALESCE(finished_at, ?), "
                "finish_reason = COALESCE(finish_reason, 'cancelled') "
                "WHERE session_id = ? AND status = 'streaming'",
                (now, session_id),
            ).rowcount
            conn.execute(
                "UPDATE sessions SET status = 'interrupted', end_reason = COALESCE(end_reason, 'killed'), "
                "updated_at = ?, writer_pid = NULL WHERE id = ? AND status = 'running'",
                (now, session_id),
            )
    return changed
