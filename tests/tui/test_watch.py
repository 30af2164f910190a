"""`townhall watch`: a real writer process records a debate while a watcher app follows the database.

The file is also the writer: `python tests/tui/test_watch.py DB` runs a Session on the scripted
engine (slow tokens, a ballot) into a Store at DB, as `townhall run --db DB` would.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import wait_until
from townhall.cli import app as cli
from townhall.domain.turns import Turn, TurnStatus
from townhall.store import Store
from townhall.store.follow import Follower, newest_running
from townhall.tui.screens.watch_screen import WatchScreen
from townhall.tui.watch_app import WatchApp

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
STEERING = {"toggle_pause", "step", "interrupt", "skip", "interject", "call_vote", "regenerate", "edit_turn", "fork",
            "prev_alternative", "next_alternative"}


def _writer(db: str) -> None:
    from store_support import personas, spec
    from townhall.debate.session import Session, SessionPlan
    from townhall.engine.scripted import ScriptedEngine, even_odds

    count = itertools.count(1)
    engine = ScriptedEngine(lambda request: f"Point {next(count)}: " + " ".join(["the bridge matters"] * 12) + ".",
                            delay=0.04, probe_script=even_odds)
    store = Store.open(Path(db))

    async def main() -> None:
        await Session(engine, SessionPlan(spec(max_turns=3), personas()), store=store).run()

    asyncio.run(main())
    store.close()


def start_writer(db: Path) -> subprocess.Popen[str]:
    paths = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.Popen([sys.executable, str(Path(__file__)), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def running_session(db: Path, timeout: float = 30.0) -> str:
    """The writer's session id, once its SessionStarted is committed."""
    found: list[str] = []

    def look() -> bool:
        if db.exists():
            try:
                store = Store.open_read_only(db)
            except Exception:  # noqa: BLE001 - the writer is still creating the schema
                return False
            try:
                found.extend(filter(None, [newest_running(store)]))
            finally:
                store.close()
        return bool(found)

    wait_for(look, timeout)
    return found[0]


async def shows_every_turn(screen: WatchScreen, reader: Store, session_id: str) -> list[Turn]:
    """Wait until the watcher has drawn every settled turn the writer recorded, word for word."""
    recorded = [t for t in reader.turns(session_id) if t.status != TurnStatus.STREAMING]
    assert len(recorded) >= 3
    shown = screen.transcript.views
    await wait_until(lambda: screen.model.state == "finished" and all(
        t.index in shown and shown[t.index].text.strip() == t.content.strip() for t in recorded))
    assert [shown[t.index].text.strip() for t in recorded] == [t.content.strip() for t in recorded]
    return recorded


async def test_a_watcher_follows_a_writer_process_to_its_vote(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    writer = start_writer(db)
    try:
        session_id = running_session(db)
        reader = Store.open_read_only(db)
        second = Follower(Store.open_read_only(db), session_id)  # another watcher at the same time
        app = WatchApp(Follower(reader, session_id), poll_s=0.1, exports_dir=tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, WatchScreen)
            assert not STEERING & {b.action for bs in screen._bindings.key_to_bindings.values() for b in bs}
            assert not screen.query("#interject")
            assert screen.header.note == "watching"
            deadline = time.monotonic() + 60
            events = []
            while not screen.header.note.startswith("the debate ended"):
                assert time.monotonic() < deadline, "the watcher never saw the end"
                events += second.poll().events
                await pilot.pause(0.1)
            assert writer.wait(timeout=30) == 0, writer.stderr.read() if writer.stderr else ""
            recorded = await shows_every_turn(screen, reader, session_id)
            outcome = reader.outcome_of(session_id)
            assert outcome is not None and screen.outcome is not None and screen.outcome.result == outcome.result
            assert screen.minutes == outcome.minutes
            assert screen.header.note == "the debate ended: max_turns"
            assert all(m.kv_tokens is None for m in screen.model.members.values())  # the writer holds them
            assert screen.model.turn >= 3
            events += second.poll().events
            names = [type(e).__name__ for e in events]
            assert names.count("SessionEnded") == 1 and names.count("TurnFinished") == len(recorded)
            assert "TokenStreamed" in names  # a turn's checkpointed words, seen before it finished
            await pilot.press("q")
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()


@pytest.mark.model
async def test_a_watcher_follows_townhall_run_on_the_embedded_model(tmp_path: Path, model_path: Path) -> None:
    """The issue's test: `townhall run` on the embedded model in one process, a watcher app in this one."""
    db = tmp_path / "th.db"
    args = ["run", "--agents", "Walt,Priya", "--motion", "Ban leaf blowers.", "--turns", "3", "--seed", "5",
            "--n-ctx", "512", "--max-tokens", "48", "--threads", "2", "--model", str(model_path), "--db", str(db)]
    writer = subprocess.Popen([sys.executable, "-m", "townhall", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        session_id = running_session(db, timeout=120)
        reader = Store.open_read_only(db)
        app = WatchApp(Follower(reader, session_id), poll_s=0.25, exports_dir=tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, WatchScreen)
            deadline = time.monotonic() + 600
            while not screen.header.note.startswith("the debate ended"):
                assert time.monotonic() < deadline, "the watcher never saw the end"
                await pilot.pause(0.25)
            _, err = writer.communicate(timeout=60)
            assert writer.returncode == 0, err
            await shows_every_turn(screen, reader, session_id)
            outcome = reader.outcome_of(session_id)
            if outcome is not None and outcome.result is not None:
                assert screen.outcome is not None and screen.outcome.result == outcome.result
            await pilot.press("q")
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()


def test_watch_without_a_running_debate_or_with_an_unknown_id_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    runner = CliRunner()
    missing = runner.invoke(cli, ["watch", "--db", str(db)])
    assert missing.exit_code == 1 and "no database here" in str(missing.exception)
    Store.open(db).close()
    none = runner.invoke(cli, ["watch", "--db", str(db)])
    assert none.exit_code == 1
    assert str(none.exception) == (f"no debate is running in {db}; start one with `townhall run` or `townhall`, "
                                   "or name a session: `townhall watch ID`")
    said = subprocess.run([sys.executable, "-m", "townhall", "watch", "--db", str(db)], capture_output=True, text=True,
                          timeout=60)
    assert said.returncode == 1 and said.stderr.count("\n") == 1 and "no debate is running" in said.stderr
    unknown = runner.invoke(cli, ["watch", "nosuch", "--db", str(db)])
    assert unknown.exit_code == 1 and "no session with id 'nosuch'" in str(unknown.exception)


if __name__ == "__main__":
    _writer(sys.argv[1])
