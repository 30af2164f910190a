"""The store's commands: sessions list/show/rename/delete, search, export, import; --db and TOWNHALL_DB."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store_support import HOSTILE, record_debate
from townhall.cli import app
from townhall.store import Store

runner = CliRunner()
TOWNHALL = str(Path(sys.executable).with_name("townhall"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.db"
    store = Store.open(path)
    asyncio.run(record_debate(store, "abc111", [("Ada", "Steel bridges last"), ("Bo", HOSTILE)], start_at=100.0))
    asyncio.run(record_debate(store, "def222", [("Bo", "Wooden bridges are cheap")], start_at=200.0,
                              motion="Fix the roads"))
    store.close()
    return path


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_sessions_list_show_rename_delete(db: Path) -> None:
    listed = json.loads(_ok(["sessions", "list", "--db", str(db), "--json"]))
    assert [s["id"] for s in listed] == ["def222", "abc111"] and listed[1]["turns"] == 2
    assert "abc111" in _ok(["sessions", "list", "--db", str(db)])
    shown = json.loads(_ok(["sessions", "show", "abc", "--db", str(db), "--json"]))
    assert shown["id"] == "abc111" and [t["speaker"] for t in shown["turns"]] == ["Ada", "Bo"]
    text = _ok(["sessions", "show", "abc", "--db", str(db)])
    assert "Ada: Steel bridges last" in text and "\x1b" not in text and "<script>alert" in text
    assert json.loads(_ok(["sessions", "rename", "abc", "Steel night", "--db", str(db), "--json"])) == {
        "id": "abc111", "title": "Steel night"}
    assert "Steel night" in _ok(["sessions", "list", "--db", str(db)])
    refused = runner.invoke(app, ["sessions", "delete", "abc", "--db", str(db)], input="n\n")
    assert refused.exit_code == 1
    _ok(["sessions", "delete", "abc", "--db", str(db), "--yes"])
    assert [s["id"] for s in json.loads(_ok(["sessions", "list", "--db", str(db), "--json"]))] == ["def222"]


def test_search_json_and_text(db: Path) -> None:
    hits = json.loads(_ok(["search", "bridges", "--db", str(db), "--json"]))
    assert sorted(h["session_id"] for h in hits) == ["abc111", "def222"]
    assert all(h["snippet"][a:b] == "bridges" for h in hits for a, b in h["highlights"])
    text = _ok(["search", "script", "--db", str(db)])
    assert "abc111" in text and "Bo" in text and "\x1b" not in text


def test_export_to_file_all_and_import(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "s.json"
    _ok(["export", "abc", "--format", "json", "-o", str(out), "--db", str(db)])
    assert json.loads(out.read_text())["session"]["id"] == "abc111"
    lines = _ok(["export", "--all", "--format", "jsonl", "--db", str(db)]).splitlines()
    assert len(lines) == 3 and all("messages" in json.loads(line) for line in lines)
    other = tmp_path / "other.db"
    imported = json.loads(_ok(["import", str(out), "--db", str(other), "--json"]))["imported"]
    assert len(imported) == 1
    assert json.loads(_ok(["sessions", "list", "--db", str(other), "--json"]))[0]["id"] == imported[0]
    html = _ok(["export", "abc", "-f", "html", "--db", str(db)])
    assert "&lt;script&gt;" in html and "<script>alert" not in html


def _townhall(args: list[str], env_db: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TOWNHALL_DB"}
    if env_db is not None:
        env["TOWNHALL_DB"] = str(env_db)
    return subprocess.run([TOWNHALL, *args], capture_output=True, text=True, env=env, timeout=60)


def test_real_command_honours_townhall_db_and_errors_are_one_line(db: Path, tmp_path: Path) -> None:
    listed = _townhall(["sessions", "list", "--json"], env_db=db)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2
    cases = [
        (["search", 'bridge"'], "not valid FTS5 syntax"),
        (["sessions", "show", "zzz"], "no session with id 'zzz'"),
        (["export", "abc", "--format", "pdf"], "unknown export format 'pdf'"),
        (["export", "--all", "--format", "html"], "--all does not work with --format html"),
        (["import", str(tmp_path / "missing.json")], "missing.json: no such file"),
    ]
    for args, expected in cases:
        done = _townhall(args, env_db=db)
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr, done.stderr
    future = tmp_path / "future.db"
    import sqlite3

    conn = sqlite3.connect(future)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    done = _townhall(["sessions", "list", "--db", str(future)])
    assert done.returncode == 1 and "newer than this Townhall" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
