"""A skipped turn has its own status: stored, exported and never counted against the budget."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import wait_until
from store_support import personas, spec
from townhall.cli.debate_cmds import turn_json
from townhall.engine.scripted import ScriptedEngine
from townhall.export import export_session, import_json
from townhall.debate.scheduler import Scheduler
from townhall.debate.session import turns_left
from townhall.store import Store
from townhall.domain.turns import TurnStatus


async def _debate_with_a_skip(store: Store) -> Scheduler:
    """Two turns of budget; the first speaker is skipped mid-turn by the watcher."""
    def reply(request: object) -> str:
        n = len(engine.requests)
        return " ".join(f"w{i}" for i in range(100)) if n == 1 else f"Remark {n} on item{n} and item{n + 1}."

    engine = ScriptedEngine(reply, delay=0.005)
    scheduler = Scheduler(engine, spec(max_turns=2, sampling={"max_tokens": 200}), personas())
    store.attach(scheduler)
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: scheduler.current_speaker is not None and len(engine.requests) == 1)
    await asyncio.sleep(0.03)
    scheduler.skip()
    assert await asyncio.wait_for(task, 10) == "max_turns"
    return scheduler


async def test_a_skipped_turn_is_stored_as_skipped_and_uses_no_budget(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        scheduler = await _debate_with_a_skip(store)
        sid = scheduler.session_id
        assert [t.status for t in scheduler.turns] == [TurnStatus.SKIPPED, TurnStatus.COMPLETE, TurnStatus.COMPLETE]
        rows = store.connection.conn.execute(
            "SELECT status, content FROM turns WHERE session_id = ? ORDER BY turn_index", (sid,)
        ).fetchall()
        assert tuple(rows[0]) == ("skipped", "")
        stored = store.turns(sid)
        assert stored[0].status == TurnStatus.SKIPPED
        # the resume rule counts like the scheduler: 3 stored turns, 2 of them used the budget of 3
        assert turns_left(3, stored) == 1
        assert turn_json(sid, stored[0])["status"] == "skipped"


async def test_exports_carry_the_status_and_transcripts_leave_the_turn_out(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        sid = (await _debate_with_a_skip(store)).session_id
        skipped_speaker = store.turns(sid)[0].speaker
        document = json.loads(export_session(store, sid, "json"))
        assert [t["status"] for t in document["turns"]] == ["skipped", "complete", "complete"]
        text = export_session(store, sid, "txt")
        assert len(text.strip().split("\n\n")) == 2 and "skipped" not in text
        assert "[interrupted]" not in text and "*(interrupted)*" not in export_session(store, sid, "md")
        copy = import_json(store, json.dumps(document))
        assert store.turns(copy)[0].status == TurnStatus.SKIPPED and store.turns(copy)[0].speaker == skipped_speaker


def test_a_skip_stored_before_the_status_existed_reads_as_skipped(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        conn = store.connection.conn
        conn.execute("INSERT INTO sessions(id, motion, spec, created_at, updated_at, status) "
                     "VALUES ('old', 'm', '{}', 1, 1, 'stopped')")
        conn.execute("INSERT INTO turns(session_id, turn_index, speaker, kind, content, status, error) "
                     "VALUES ('old', 0, 'Ada', 'agent', '', 'interrupted', 'skipped by the watcher')")
        conn.execute("INSERT INTO turns(session_id, turn_index, speaker, kind, content, status, error) "
                     "VALUES ('old', 1, 'Bo', 'agent', 'cut off', 'interrupted', NULL)")
        first, second = store.turns("old")
        assert first.status == TurnStatus.SKIPPED and second.status == TurnStatus.INTERRUPTED
        assert turns_left(4, [first, second]) == 3
