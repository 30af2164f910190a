"""The recorder: what each scheduler event leaves in the database, and the Store queries."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from store_support import personas, record_debate, spec
from townhall.engine.base import EngineInfo
from townhall.errors import NotFoundError, StoreError
from townhall.domain.events import (
    EventBus,
    Paused,
    Resumed,
    SessionEnded,
    SessionStarted,
    StrategyApplied,
    TokenStreamed,
    TurnFailed,
    TurnStarted,
)
from townhall.store import Store
from townhall.domain.turns import Turn, TurnKind, TurnStatus

INFO = EngineInfo(backend="scripted", model_name="scripted", n_ctx=2048, device="CPU")


def _rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_turn_row_lifecycle_streaming_then_complete(tmp_path: Path) -> None:
    path = tmp_path / "th.db"
    store = Store.open(path)
    bus = EventBus()
    store.attach(bus, checkpoint_s=None)
    await bus.apublish(SessionStarted("abc", spec().model_dump(), tuple(personas()), INFO, 100.0))
    await bus.apublish(TurnStarted("abc", 0, "Ada", TurnKind.AGENT, 101.0))
    assert _rows(path, "SELECT status, content FROM turns") == [("streaming", "")]
    for piece in ["We ", "should ", "build."]:
        await bus.apublish(TokenStreamed("abc", 0, "Ada", piece))
    assert _rows(path, "SELECT status, content FROM turns") == [("streaming", "")]  # not token by token
    stored = await _finish(bus, "abc", 0, "Ada", "We should build.")
    assert _rows(path, "SELECT status, content, generated_tokens, finish_reason FROM turns") == [
        ("complete", "We should build.", 3, "stop")
    ]
    [turn] = store.turns("abc")
    assert turn == stored
    await bus.apublish(SessionEnded("abc", "max_turns", 200.0, 1))
    summary = store.get_session("abc").summary
    assert (summary.status, summary.end_reason, summary.ended_at, summary.turns) == ("finished", "max_turns", 200.0, 1)
    assert summary.participants == ("Ada", "Bo", "Cy")
    store.close()


async def _finish(bus: EventBus, session: str, index: int, speaker: str, text: str) -> Turn:
    from townhall.engine.base import GenerationStats, SamplingParams
    from townhall.domain.events import TurnFinished

    turn = Turn(index=index, speaker=speaker, kind=TurnKind.AGENT, content=text, status=TurnStatus.COMPLETE,
                started_at=101.0, finished_at=102.5,
                stats=GenerationStats(prompt_tokens=50, reused_tokens=40, prefill_tokens=10, generated_tokens=3,
                                      ttft_ms=20.0, decode_tps=45.5, total_ms=300.0),
                sampling=SamplingParams(temperature=0.6, seed=3))
    await bus.apublish(TurnFinished(session, turn))
    return turn


async def test_streaming_text_is_checkpointed_and_close_marks_it_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "th.db"
    store = Store.open(path)
    bus = EventBus()
    clock = iter([0.0, 0.5, 3.0, 3.1, 3.2]).__next__
    from townhall.store.recorder import Recorder

    recorder = Recorder(store.connection, checkpoint_s=2.0, monotonic=clock)
    bus.subscribe(recorder)
    await bus.apublish(SessionStarted("cp", spec().model_dump(), tuple(personas()), INFO, 1.0))
    await bus.apublish(TurnStarted("cp", 0, "Bo", TurnKind.AGENT, 2.0))  # clock 0.0
    await bus.apublish(TokenStreamed("cp", 0, "Bo", "Wheat "))  # 0.5: too soon
    assert _rows(path, "SELECT content FROM turns") == [("",)]
    await bus.apublish(TokenStreamed("cp", 0, "Bo", "first "))  # 3.0: checkpoint
    assert _rows(path, "SELECT content FROM turns") == [("Wheat first ",)]
    await bus.apublish(TokenStreamed("cp", 0, "Bo", "then"))  # 3.1: not yet
    recorder.close(now=9.0)
    assert _rows(path, "SELECT content, status, finished_at FROM turns") == [("Wheat first then", "interrupted", 9.0)]
    assert _rows(path, "SELECT status FROM sessions") == [("interrupted",)]
    store.close()


async def test_failed_turn_pauses_and_strategy_events_are_kept(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    bus = EventBus()
    store.attach(bus)
    await bus.apublish(SessionStarted("f1", spec().model_dump(), tuple(personas()), INFO, 1.0))
    await bus.apublish(Paused("f1", 2.0))
    await bus.apublish(Resumed("f1", 3.0))
    await bus.apublish(TurnStarted("f1", 0, "Ada", TurnKind.AGENT, 4.0))
    failed = Turn(index=0, speaker="Ada", kind=TurnKind.AGENT, content="par", status=TurnStatus.FAILED,
                  started_at=4.0, finished_at=5.0, error="decode failed")
    await bus.apublish(TurnFailed("f1", failed, "decode failed"))
    await bus.apublish(StrategyApplied("f1", "Ada", "truncate", "dropped 3 turns", 6.0))
    await bus.apublish(SessionEnded("f1", "error", 7.0, 1, error="decode failed"))
    record = store.get_session("f1")
    assert [e.type for e in record.events] == ["started", "paused", "resumed", "error", "strategy", "ended"]
    assert record.events[4].detail == {"agent": "Ada", "strategy": "truncate", "detail": "dropped 3 turns"}
    assert (record.summary.status, record.error) == ("failed", "decode failed")
    [turn] = store.turns("f1")
    assert (turn.status, turn.error, turn.content) == (TurnStatus.FAILED, "decode failed", "par")
    store.close()


async def test_model_sha256_recorded_and_cached_by_size_and_mtime(tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + b"\x00" * 1000)
    info = EngineInfo(backend="local", model_name="tiny", n_ctx=512, device="CPU", model_path=str(model))
    store = Store.open(tmp_path / "th.db")
    await record_debate(store, "h1", [("Ada", "one")], engine=info)
    assert store.get_session("h1").model_sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    # a cached value is reused while size and mtime match ...
    store.connection.conn.execute("UPDATE model_hashes SET sha256 = 'cached'")
    await record_debate(store, "h2", [("Ada", "two")], engine=info)
    assert store.get_session("h2").model_sha256 == "cached"
    # ... and recomputed when the file changes
    model.write_bytes(b"GGUF" + b"\x01" * 1000)
    os.utime(model, ns=(1, 1))
    await record_debate(store, "h3", [("Ada", "three")], engine=info)
    assert store.get_session("h3").model_sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    server = EngineInfo(backend="openai", model_name="remote", n_ctx=512, device="server")
    await record_debate(store, "h4", [("Ada", "four")], engine=server)
    assert store.get_session("h4").model_sha256 is None
    store.close()


async def test_list_prefix_rename_delete(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    await record_debate(store, "aa11", [("Ada", "x")], start_at=10.0)
    await record_debate(store, "aa22", [("Bo", "y"), ("Ada", "zebra crossing")], start_at=20.0)
    await record_debate(store, "bb33", [("Bo", "w")], start_at=30.0)
    assert [s.id for s in store.list_sessions()] == ["bb33", "aa22", "aa11"]
    assert [s.id for s in store.list_sessions(limit=1)] == ["bb33"]
    assert store.get_session("bb").id == "bb33"
    with pytest.raises(NotFoundError, match="ambiguous"):
        store.get_session("aa")
    with pytest.raises(NotFoundError, match="no session"):
        store.get_session("zz")
    with pytest.raises(NotFoundError):
        store.get_session("a%")  # LIKE wildcards are literal
    store.rename("aa2", "Bridge night")
    assert store.get_session("aa22").summary.label == "Bridge night"
    with pytest.raises(StoreError, match="one non-empty line"):
        store.rename("aa22", "  ")
    assert [h.session_id for h in store.search("zebra")] == ["aa22"]
    store.delete("aa22")
    assert [s.id for s in store.list_sessions()] == ["bb33", "aa11"]
    conn = store.connection.conn
    assert conn.execute("SELECT COUNT(*) FROM turns WHERE session_id = 'aa22'").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM participants WHERE session_id = 'aa22'").fetchone()[0] == 0
    assert store.search("zebra") == []  # the FTS index forgot the deleted turns too
    store.close()


async def test_session_that_never_started_leaves_no_row(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "th.db")
    bus = EventBus()
    store.attach(bus)
    await bus.apublish(SessionEnded("nostart", "error", 1.0, 0, error="model file not found"))
    assert store.list_sessions() == []
    store.close()
