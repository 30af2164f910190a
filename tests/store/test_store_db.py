"""The database file: creation, pragmas, ordered migrations, upgrade in place, refusals."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from store_support import record_debate
from townhall.errors import StoreError
from townhall.paths import data_dir
from townhall.store import Store
from townhall.store.database import latest_version, migrations, recover_interrupted


def test_new_database_has_schema_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "th.db"
    store = Store.open(path)
    assert path.exists()
    assert store.schema_version() == latest_version() >= 2
    conn = store.connection.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    tables = set(store.connection.db.table_names())
    assert {"sessions", "participants", "turns", "events", "turns_fts"} <= tables
    columns = {c.name: c.type for c in store.connection.db["turns"].columns}
    for name in ("prompt_tokens", "reused_tokens", "prefill_tokens", "generated_tokens", "ttft_ms", "decode_tps",
                 "sampling", "status", "kind", "started_at", "finished_at"):
        assert name in columns
    assert set(columns.values()) <= {"TEXT", "INTEGER", "REAL"}  # plain types for Datasette
    store.close()


def test_default_path_honours_townhall_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "env" / "chosen.db"
    monkeypatch.setenv("TOWNHALL_DB", str(target))
    Store.open(None).close()
    assert target.exists()


def test_migration_files_are_ordered_from_the_db_folder() -> None:
    steps = migrations()
    assert [m.version for m in steps] == list(range(1, len(steps) + 1))
    assert all(m.path.parent == data_dir("db") for m in steps)


def test_v1_database_is_upgraded_in_place_and_old_turns_become_searchable(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    v1 = migrations()[0]
    conn = sqlite3.connect(path)
    conn.executescript(v1.sql())
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO sessions(id, motion, spec, created_at, updated_at, status) "
        "VALUES ('old1', 'Old motion', '{}', 1, 1, 'finished')"
    )
    conn.execute(
        "INSERT INTO turns(session_id, turn_index, speaker, kind, content, status) "
        "VALUES ('old1', 0, 'Ada', 'agent', 'the aqueduct leaks', 'complete')"
    )
    conn.commit()
    conn.close()

    store = Store.open(path)
    assert store.schema_version() == latest_version()
    assert [t.content for t in store.turns("old1")] == ["the aqueduct leaks"]
    hits = store.search("aqueduct")
    assert [(h.session_id, h.speaker) for h in hits] == [("old1", "Ada")]
    store.close()


def test_newer_database_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE keep_me(x)")
    conn.execute(f"PRAGMA user_version = {latest_version() + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        Store.open(path)
    message = str(info.value)
    assert "newer" in message and str(path) in message and "\n" not in message
    conn = sqlite3.connect(path)  # untouched
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version() + 5
    conn.close()


def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    (folder / "001_a.sql").write_text("CREATE TABLE a(x INTEGER);")
    (folder / "002_b.sql").write_text("CREATE TABLE b(x INTEGER); CREATE TABLE a(y);")  # fails: a exists
    from townhall.store.database import connect

    with pytest.raises(StoreError, match="schema 2"):
        connect(tmp_path / "m.db", folder=folder)
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'b'").fetchone() is None
    conn.close()


def test_not_a_database_and_directory_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        Store.open(junk)
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path)


def test_second_reader_sees_committed_turns_while_a_writer_is_open(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    asyncio.run(record_debate(store, "live", [("Ada", "first words"), ("Bo", "second words")], end=None))
    reader = sqlite3.connect(f"file:{tmp_path / 'th.db'}?mode=ro", uri=True)
    rows = reader.execute("SELECT speaker, content, status FROM turns ORDER BY turn_index").fetchall()
    assert rows == [("Ada", "first words", "complete"), ("Bo", "second words", "complete")]
    # another Store opening it meanwhile does not mark the live session interrupted
    other = Store.open(tmp_path / "th.db")
    assert other.get_session("live").summary.status == "running"
    other.close()
    reader.close()
    store.close()


def test_streaming_turn_of_a_dead_writer_becomes_interrupted(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    asyncio.run(record_debate(store, "s", [("Ada", "done")], end=None))
    conn = store.connection.conn
    conn.execute("INSERT INTO turns(session_id, turn_index, speaker, kind, content, status, started_at) "
                 "VALUES ('s', 1, 'Bo', 'agent', 'half a sent', 'streaming', 5)")
    assert recover_interrupted(store.connection) == 0  # our own process is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    conn.execute("UPDATE sessions SET writer_pid = ? WHERE id = 's'", (int(dead.stdout),))
    store.close()

    again = Store.open(tmp_path / "th.db")
    turns = again.turns("s")
    assert [(t.content, str(t.status)) for t in turns] == [("done", "complete"), ("half a sent", "interrupted")]
    assert again.get_session("s").summary.status == "interrupted"
    again.close()
