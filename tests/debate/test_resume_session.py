"""Resume: a stored session continues where it stopped, same participants and settings."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from store_support import personas, spec
from townhall.cli.store_cmds import resume_session
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError, StoreError
from townhall.debate.scheduler import Scheduler
from townhall.store import Store
from townhall.domain.turns import TurnStatus


async def _first_run(store: Store, max_turns: int = 3, **spec_extra: object) -> str:
    engine = ScriptedEngine(lambda request: f"Opening remark {len(engine.requests)} about the bridge.")
    scheduler = Scheduler(engine, spec(max_turns=max_turns, **spec_extra), personas())
    store.attach(scheduler)
    assert await scheduler.run() == "max_turns"
    return scheduler.session_id


async def test_resume_continues_the_transcript_with_the_same_people(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    session_id = await _first_run(store)
    before = store.turns(session_id)
    assert [t.index for t in before] == [0, 1, 2]

    loaded_spec, loaded_people, history = store.load_for_resume(session_id[:5])
    assert loaded_spec == spec(max_turns=3) and history == before
    assert sorted(loaded_people, key=lambda p: p.name) == personas()  # snapshots, moderator first

    engine = ScriptedEngine(lambda request: f"Continuing point {len(engine.requests)}.")
    out = io.StringIO()
    result = await resume_session(store, session_id[:6], engine, turns=2, out=out)
    assert result.reason == "max_turns" and result.session_id == session_id
    after = store.turns(session_id)
    assert after[:3] == before  # nothing said before was changed
    assert [(t.index, t.status, t.content.strip()) for t in after[3:]] == [
        (3, TurnStatus.COMPLETE, "Continuing point 1."),
        (4, TurnStatus.COMPLETE, "Continuing point 2."),
    ]
    # the engine rebuilt the agents' context from the stored turns
    assert engine.requests and all(t.content.strip() in engine.requests[0].prompt for t in before)
    record = store.get_session(session_id)
    assert record.summary.status == "finished" and record.summary.turns == 5
    assert [e.type for e in record.events] == ["started", "ended", "resumed_session", "ended"]
    assert [line.split(":")[0] for line in out.getvalue().splitlines()[:2]] == [after[3].speaker, after[4].speaker]
    store.close()


async def test_resume_after_interruption_keeps_the_cut_turn_and_goes_on(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    session_id = await _first_run(store, max_turns=4)
    # simulate a crash during turn 4: a streaming row left by a process that is gone
    conn = store.connection.conn
    conn.execute("INSERT INTO turns(session_id, turn_index, speaker, kind, content, status, started_at) "
                 "VALUES (?, 4, 'Ada', 'agent', 'I was saying', 'streaming', 1)", (session_id,))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    conn.execute("UPDATE sessions SET status = 'running', writer_pid = ? WHERE id = ?", (int(dead.stdout), session_id))
    store.close()

    store = Store.open(tmp_path / "th.db")
    _, _, history = store.load_for_resume(session_id)
    assert history[-1].status == TurnStatus.INTERRUPTED and history[-1].content == "I was saying"
    await resume_session(store, session_id, ScriptedEngine(["Picking up again."]), turns=1)
    turns = store.turns(session_id)
    assert [t.index for t in turns] == [0, 1, 2, 3, 4, 5]
    assert turns[4].content == "I was saying" and turns[5].content.strip() == "Picking up again."
    store.close()


async def test_resume_refusals_are_one_line(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    session_id = await _first_run(store)
    with pytest.raises(ConfigError, match="already had its 3 turns; pass --turns N"):
        await resume_session(store, session_id, ScriptedEngine())
    store.connection.conn.execute(
        "UPDATE sessions SET status = 'running', writer_pid = ? WHERE id = ?", (os.getpid(), session_id)
    )
    with pytest.raises(StoreError, match="still running"):
        store.load_for_resume(session_id)
    store.close()


@pytest.mark.model
def test_cli_resume_on_the_real_model(tmp_path: Path, model_path: Path) -> None:
    db = tmp_path / "th.db"
    store = Store.open(db)
    session_id = asyncio.run(_first_run(store, max_turns=2, n_ctx=512, ballot=False))
    store.close()
    env = {**os.environ, "TOWNHALL_DB": str(db)}
    townhall = Path(sys.executable).with_name("townhall")
    done = subprocess.run(
        [str(townhall), "resume", session_id[:8], "--turns", "1", "--model", str(model_path), "--threads", "2"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    store = Store.open(db)
    turns = store.turns(session_id)
    record = store.get_session(session_id)
    store.close()
    assert len(turns) == 3 and turns[2].status in (TurnStatus.COMPLETE, TurnStatus.DEGENERATE)
    assert turns[2].stats is not None and turns[2].stats.prompt_tokens > 0
    assert record.model_sha256 is not None and record.summary.model_name != "scripted"
    assert f"{turns[2].speaker}:" in done.stdout
