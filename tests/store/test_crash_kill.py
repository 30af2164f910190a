"""Crash safety: a real child process recording a real debate is killed with SIGKILL mid-turn.

The file is also the child: `python tests/store/test_crash_kill.py DB ENGINE [MODEL]` runs a
Scheduler into a Store and prints `DONE <index>` after each turn is recorded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from townhall.store import Store
from townhall.domain.turns import TurnStatus

HERE = Path(__file__).resolve().parent


def _child(db: str, engine_kind: str, model: str | None) -> None:
    from store_support import personas, spec
    from townhall.engine.base import SamplingOverrides
    from townhall.domain.events import TurnFinished
    from townhall.debate.scheduler import Scheduler

    if engine_kind == "scripted":
        from townhall.engine.scripted import ScriptedEngine

        engine = ScriptedEngine(delay=0.1)
        town = spec(max_turns=60)
    else:
        from townhall.engine.local import LocalEngine

        engine = LocalEngine(model, n_ctx=512, threads=2)
        town = spec(max_turns=20, n_ctx=512, sampling=SamplingOverrides(max_tokens=48, temperature=0.0))
    store = Store.open(Path(db))

    def report(event: object) -> None:
        if isinstance(event, TurnFinished):
            print(f"DONE {event.turn.index}", flush=True)

    async def main() -> None:
        scheduler = Scheduler(engine, town, personas())
        store.attach(scheduler, checkpoint_s=0.15)
        scheduler.subscribe(report)  # after the store: a DONE line means the turn is committed
        await scheduler.run()

    asyncio.run(main())


def _poll(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # schema not created yet
    finally:
        conn.close()


def _run_and_kill(tmp_path: Path, engine_kind: str, model: str | None, complete_before_kill: int,
                  timeout: float) -> tuple[Path, list[int], tuple]:
    db = tmp_path / "crash.db"
    args = [sys.executable, str(Path(__file__)), str(db), engine_kind] + ([model] if model else [])
    # The child imports the shared helpers (tests/store_support.py) from the tests folder.
    paths = [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE, env=env)
    cut = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and child.poll() is None:
            done = _poll(db, "SELECT COUNT(*) FROM turns WHERE status = 'complete'")
            live = _poll(db, "SELECT turn_index, speaker, content FROM turns "
                             "WHERE status = 'streaming' AND content != ''")
            if done and done[0][0] >= complete_before_kill and live:
                cut = live[0]
                os.kill(child.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if child.poll() is None and cut is None:
            child.kill()
        out, err = child.communicate(timeout=30)
    assert cut is not None, f"never caught a turn mid-stream; child said: {err[-2000:]}"
    assert child.returncode == -signal.SIGKILL
    printed = [int(line.split()[1]) for line in out.splitlines() if line.startswith("DONE ")]
    return db, printed, cut


def _check_after_crash(db: Path, printed: list[int], cut: tuple) -> list:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    store = Store.open(db)  # the next open settles the cut-off turn
    [session] = store.list_sessions()
    turns = store.turns(session.id)
    store.close()
    by_index = {t.index: t for t in turns}
    for index in printed:  # every turn reported finished is there, complete
        assert by_index[index].status == TurnStatus.COMPLETE and by_index[index].content
    complete = [t.index for t in turns if t.status == TurnStatus.COMPLETE]
    assert complete == list(range(len(complete))) and len(complete) >= len(printed)
    cut_index, cut_speaker, cut_text = cut
    cut_turn = by_index[cut_index]
    assert cut_turn.status == TurnStatus.INTERRUPTED and cut_turn.speaker == cut_speaker
    assert cut_turn.content.startswith(cut_text)  # the checkpointed words survived
    assert not [t for t in turns if t.status == TurnStatus.STREAMING]
    assert session.status == "interrupted"
    return turns


def test_sigkill_mid_turn_with_scripted_engine(tmp_path: Path) -> None:
    db, printed, cut = _run_and_kill(tmp_path, "scripted", None, complete_before_kill=3, timeout=60)
    assert len(printed) >= 3
    turns = _check_after_crash(db, printed, cut)
    for turn in turns:  # the scripted engine's n-th request says "Point number n ..."
        expected = f"Point number {turn.index + 1} is well taken."
        if turn.status == TurnStatus.COMPLETE:
            assert turn.content.strip() == expected
        else:
            assert turn.index == cut[0] and expected.startswith(turn.content.strip())


@pytest.mark.model
def test_sigkill_mid_turn_with_real_model(tmp_path: Path, model_path: Path) -> None:
    db, printed, cut = _run_and_kill(tmp_path, "local", str(model_path), complete_before_kill=1, timeout=240)
    turns = _check_after_crash(db, printed, cut)
    assert turns[0].stats is not None and turns[0].stats.generated_tokens > 0


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
