"""When the record cannot be written during a run: real faults, no mocks of SQLite (issue 21).

A disk that fills is SQLite's own `PRAGMA max_page_count` (a real SQLITE_FULL); a busy database
is a second process holding the write lock; an export or a generate output goes to `/dev/full`.
A fault is set off when the recorder is handed a chosen event (`fault_at`); the first write that
needs room after that point fails, as on a real disk. Each test checks the one line, the exit
code, that no traceback shows, and that once the fault is cleared every turn shown is kept.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from store_support import long_reply, personas, spec
from townhall.cli import main
from townhall.debate.session import Session, SessionPlan
from townhall.domain.events import Event
from townhall.engine.scripted import ScriptedEngine, even_odds
from townhall.store import Store
from townhall.store import recorder as recorder_module
from townhall.store.recorder import Recorder

ARGS = ["run", "--motion", "Build a new bridge over the river", "--agents", "Walt,Priya", "--turns", "4",
        "--max-tokens", "1000", "--seed", "3", "--json"]



@pytest.fixture
def fault_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int, Callable[[Recorder], None]], None]:
    """`fault_at(kind, nth, fault)`: run `fault(recorder)` before the recorder writes the nth event of `kind`."""

    def arm(kind: str, nth: int, fault: Callable[[Recorder], None]) -> None:
        original = Recorder._record
        seen: dict[str, int] = {}

        def record(self: Recorder, event: Event) -> None:
            name = type(event).__name__
            seen[name] = seen.get(name, 0) + 1
            if name == kind and seen[name] == nth:
                fault(self)
            original(self, event)

        monkeypatch.setattr(Recorder, "_record", record)

    return arm


def disk_full(recorder: Recorder) -> None:
    conn = recorder._db.conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@pytest.fixture
def lock_holders() -> Iterator[list[subprocess.Popen[str]]]:
    held: list[subprocess.Popen[str]] = []
    yield held
    for process in held:
        process.kill()
        process.wait()


def lock_held(held: list[subprocess.Popen[str]], seconds: float = 30.0) -> Callable[[Recorder], None]:
    """Another process takes the write lock and keeps it far past the busy timeout and the retries."""

    def fault(recorder: Recorder) -> None:
        recorder._db.conn.execute("PRAGMA busy_timeout = 50")
        process = subprocess.Popen([sys.executable, "-c", LOCKER, str(recorder._db.path), str(seconds)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        held.append(process)

    return fault


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["townhall", *args])
    code = 0
    try:
        main()
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("townhall.engine.factory.build_engine",
                        lambda config: ScriptedEngine(long_reply(), probe_script=even_odds))


def check_fault(db: Path, code: int, out: str, err: str, cause: str, monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str]) -> dict:
    """The one line, exit 1, no traceback, an `error` event; then the kept file imports every turn shown."""
    assert code == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"townhall: error: cannot write to {db}: {cause}; "), lines[0]
    events = [json.loads(line) for line in out.splitlines()]
    error = events[-1]
    assert error["type"] == "error" and error["error"] in lines[0] and error["unsaved"] in lines[0]
    shown = [e["content"] for e in events if e["type"] == "turn"]
    assert shown
    code, out, err = run_cli(["import", error["unsaved"], "--db", str(db), "--json"], monkeypatch, capsys)
    assert code == 0, err
    new_id = json.loads(out)["imported"][0]
    with Store.open(db) as store:
        kept = [t.content for t in store.turns(new_id)]
        outcome = store.outcome_of(new_id)
    assert kept == shown
    return {"events": events, "outcome": outcome, "line": lines[0]}


def test_disk_full_at_session_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], fault_at: Callable) -> None:
    scripted(monkeypatch)
    fault_at("SessionStarted", 1, disk_full)
    db = tmp_path / "t.db"
    code, out, err = run_cli([*ARGS, "--db", str(db)], monkeypatch, capsys)
    seen = check_fault(db, code, out, err, "the disk is full", monkeypatch, capsys)
    # The run stopped at the first turn that found no room (the session's own rows fit): none followed it.
    assert len([e for e in seen["events"] if e["type"] == "turn"]) <= 2
    assert "1 turn is not saved in the database" in seen["line"]


def test_disk_full_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str], fault_at: Callable) -> None:
    scripted(monkeypatch)
    fault_at("TurnFinished", 3, disk_full)
    db = tmp_path / "t.db"
    code, out, err = run_cli([*ARGS, "--db", str(db)], monkeypatch, capsys)
    seen = check_fault(db, code, out, err, "the disk is full", monkeypatch, capsys)
    turns = [e for e in seen["events"] if e["type"] == "turn"]
    assert len(turns) == 3 and "1 turn is not saved" in seen["line"]
    assert not any(e["type"] in ("outcome", "minutes") for e in seen["events"])  # no ballot after a failure


def test_the_database_deleted_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], fault_at: Callable) -> None:
    """SQLite would go on writing into the unlinked file; the recorder sees the path is gone."""
    scripted(monkeypatch)
    fault_at("TurnFinished", 2, lambda recorder: recorder._db.path.unlink())
    db = tmp_path / "t.db"
    code, out, err = run_cli([*ARGS, "--db", str(db)], monkeypatch, capsys)
    seen = check_fault(db, code, out, err, "the database file was deleted while the session ran", monkeypatch,
                       capsys)
    assert len([e for e in seen["events"] if e["type"] == "turn"]) == 2


@pytest.mark.parametrize("kind", ["OutcomeDecided", "MinutesWritten"])
def test_lock_held_during_the_ballot_and_the_minutes(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    fault_at: Callable, lock_holders: list[subprocess.Popen[str]],
) -> None:
    """A second process holds the write lock past the busy timeout and every retry: handled as a full disk."""
    scripted(monkeypatch)
    monkeypatch.setattr(recorder_module, "BUSY_BACKOFF_S", (0.05, 0.1))
    fault_at(kind, 1, lock_held(lock_holders))
    db = tmp_path / "t.db"
    code, out, err = run_cli([*ARGS, "--db", str(db)], monkeypatch, capsys)
    for process in lock_holders:  # the fault is cleared: the other writer lets go
        process.kill()
        process.wait()
    seen = check_fault(db, code, out, err, "another process holds the database's write lock", monkeypatch, capsys)
    assert "the end of the session is not saved" in seen["line"]
    assert seen["outcome"] is not None and seen["outcome"].result == next(
        e for e in seen["events"] if e["type"] == "outcome")["result"]
    if kind == "MinutesWritten":
        minutes = next(e for e in seen["events"] if e["type"] == "minutes")["text"]
        assert seen["outcome"].minutes == minutes


def test_a_lock_let_go_within_the_retries_is_no_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], fault_at: Callable,
                                                      lock_holders: list[subprocess.Popen[str]]) -> None:
    scripted(monkeypatch)
    monkeypatch.setattr(recorder_module, "BUSY_BACKOFF_S", (0.2, 0.5, 1.0, 2.0))
    fault_at("TurnFinished", 2, lock_held(lock_holders, seconds=0.5))
    db = tmp_path / "t.db"
    code, out, err = run_cli([*ARGS, "--db", str(db)], monkeypatch, capsys)
    assert code == 0 and err == ""
    events = [json.loads(line) for line in out.splitlines()]
    with Store.open(db) as store:
        kept = [t.content for t in store.turns(events[0]["session"])]
    assert kept == [e["content"] for e in events if e["type"] == "turn"]


def test_a_retry_once_there_is_room_leaves_the_record_as_if_nothing_happened(
    tmp_path: Path, fault_at: Callable
) -> None:
    """The store keeps what failed; `retry` writes it: the same turns, stances, outcome and minutes."""
    fault_at("TurnFinished", 2, disk_full)
    the_spec = spec(max_turns=4, sampling={"max_tokens": 1000})

    async def run(db: Path) -> tuple[Store, str]:
        store = Store.open(db)
        session = Session(ScriptedEngine(long_reply(), probe_script=even_odds), SessionPlan(the_spec, personas()),
                          store=store)
        result = await session.run()
        assert result.record_error is not None and result.reason == "error"
        assert len(result.turns) == 2 and store.unsaved_turns(result.session_id) == 1
        store.connection.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        store.retry()
        assert store.unsaved_turns(result.session_id) == 0 and store.record_failure(result.session_id) is None
        return store, result.session_id

    store, session_id = asyncio.run(run(tmp_path / "t.db"))
    with store:
        turns = store.turns(session_id)
        record = store.get_session(session_id)
        stances = store.stances_of(session_id)
    assert [t.index for t in turns] == [0, 1] and all(t.status == "complete" for t in turns)
    assert record.summary.status == "failed" and "the disk is full" in (record.error or "")
    assert len(stances) >= 1


def test_json_lines_escape_line_separators() -> None:
    from townhall.domain.text import json_line

    line = json_line({"text": "one\u2028two\u2029three"})
    assert line.splitlines() == [line.rstrip("\n")] and json.loads(line)["text"] == "one\u2028two\u2029three"


def test_an_export_onto_a_full_disk_is_one_line_and_leaves_no_half_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted(monkeypatch)
    db = tmp_path / "t.db"
    code, out, _ = run_cli([*ARGS, "--db", str(db)], monkeypatch, capsys)
    session = json.loads(out.splitlines()[0])["session"]
    code, out, err = run_cli(["export", session, "--format", "json", "-o", "/dev/full", "--db", str(db)],
                             monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == ["townhall: error: /dev/full: cannot write the export (No space left on device)"]
    # A file that exists stays whole when the new export cannot be written (temporary file, then rename).
    target = tmp_path / "kept.md"
    target.write_text("the earlier export\n", encoding="utf-8")
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    code, out, err = run_cli(["export", session, "-o", str(target), "--db", str(db)], monkeypatch, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert target.read_text(encoding="utf-8") == "the earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".kept")) == []


def test_an_import_onto_a_full_database_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    scripted(monkeypatch)
    db = tmp_path / "t.db"
    code, out, _ = run_cli([*ARGS, "--db", str(db)], monkeypatch, capsys)
    session = json.loads(out.splitlines()[0])["session"]
    exported = tmp_path / "s.json"
    assert run_cli(["export", session, "--format", "json", "-o", str(exported), "--db", str(db)],
                   monkeypatch, capsys)[0] == 0
    code, out, err = run_cli(["import", str(exported), "--db", "/dev/full"], monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


GENERATE = (
    'name = "Asker"\ntitle = "a curious student"\nbio = "Asks what words mean."\nstyle = "Short questions."\n',
    'name = "Answerer"\ntitle = "a patient teacher"\nbio = "Explains words."\nstyle = "One sentence."\n',
)


def generate_config(tmp_path: Path, words: list[str]) -> Path:
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    for number, persona in enumerate(GENERATE):
        (agents / f"p{number}.toml").write_text(persona, encoding="utf-8")
    path = tmp_path / "gen.toml"
    path.write_text("\n".join([
        'motion = "The teacher explains the meaning of the word \\"{word}\\"."',
        'participants = ["Asker", "Answerer"]', 'agents_dir = "agents"', f"words = {json.dumps(words)}",
        "turns = 2", "min_turns = 1", "seed = 3", "parallel = 1", "[sampling]", "max_tokens = 1000",
    ]) + "\n", encoding="utf-8")
    return path


def test_a_generate_output_onto_a_full_disk_stops_the_run_and_keeps_every_conversation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out /dev/full` is refused before a turn; an output whose disk fills after the first
    conversation (the file then leads to `/dev/full`) stops the run with one line."""
    monkeypatch.setattr("townhall.engine.factory.build_engine",
                        lambda config: ScriptedEngine(["A short question?", "A short answer."] * 20))
    config, db = generate_config(tmp_path, ["bridge", "leaf", "river"]), tmp_path / "t.db"
    code, out, err = run_cli(["generate", str(config), "--out", "/dev/full", "--db", str(db)], monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == ["townhall: error: --out /dev/full: is not a regular file"]

    from townhall.generate.output import OutputFile

    output = tmp_path / "out.jsonl"
    original = OutputFile.append
    appended: list[str] = []

    def fill_after_the_first(self: OutputFile, text: str, **kw: object) -> object:
        if appended:  # the disk is full now: the output file leads to /dev/full
            self.path.unlink()
            self.path.symlink_to("/dev/full")
        appended.append(text)
        return original(self, text, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(OutputFile, "append", fill_after_the_first)
    code, out, err = run_cli(["generate", str(config), "--out", str(output), "--db", str(db)], monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err and "Traceback" not in out
    assert err.strip().splitlines() == [
        f"townhall: error: generate stopped early: cannot write to {output}: the disk is full; "
        f"every finished conversation is kept in {db}"]
    with Store.open(db) as store:
        sessions = store.list_sessions()
        kept = {s.id: [t.content for t in store.turns(s.id)] for s in sessions}
    assert len(appended) == 2 and len(sessions) >= 2  # the written one and the one the disk refused
    assert all(turns for turns in kept.values())


CARD = {"name": "Captain Reyes", "description": "Captain Reyes commanded the harbour patrol.",
        "personality": "Gruff, loyal.", "mes_example": ""}


def test_agents_import_onto_a_full_disk_is_one_line_and_leaves_no_half_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The persona file's temporary name leads to `/dev/full` (a real ENOSPC); a folder that
    cannot be made (under `/dev/full`) is one line too."""
    import os

    card = tmp_path / "reyes.json"
    card.write_text(json.dumps(CARD), encoding="utf-8")
    agents = tmp_path / "agents"
    agents.mkdir()
    target = agents / "captain-reyes.toml"
    target.write_text("# the persona as it was\n", encoding="utf-8")
    temporary = agents / f".{target.name}.{os.getpid()}.tmp"
    temporary.symlink_to("/dev/full")
    code, out, err = run_cli(["agents", "import", str(card), "--agents-dir", str(agents), "--force"],
                             monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"townhall: error: {target}: cannot write the persona (No space left on device)"]
    assert target.read_text(encoding="utf-8") == "# the persona as it was\n"
    assert sorted(p.name for p in agents.iterdir()) == ["captain-reyes.toml"]  # no temporary left
    code, out, err = run_cli(["agents", "import", str(card), "--agents-dir", "/dev/full/agents"], monkeypatch, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "townhall: error: /dev/full/agents/captain-reyes.toml: cannot write the persona (Not a directory)"]
