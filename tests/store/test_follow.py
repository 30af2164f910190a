"""The follower: a read-only reader of a database the real Recorder writes, turning new rows into events."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from store_support import personas, record_branched, record_debate, spec
from townhall.domain.events import (
    BranchSwitched,
    Event,
    MinutesWritten,
    OutcomeDecided,
    SessionEnded,
    SessionStarted,
    StanceMeasured,
    TokenStreamed,
    TurnFailed,
    TurnFinished,
    TurnStarted,
    Vote,
)
from townhall.domain.turns import Turn, TurnKind, TurnStatus
from townhall.engine.base import EngineInfo
from townhall.errors import NotFoundError, StoreError
from townhall.store import Store
from townhall.store.database import writer_identity
from townhall.store.follow import Follower, newest_running
from townhall.store.recorder import Recorder

SID = "watch01"
INFO = EngineInfo(backend="scripted", model_name="scripted", n_ctx=4096, device="CPU")


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_debate_followed_as_the_recorder_writes_it(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    writer = Store.open(db)
    clock = Clock()
    record = Recorder(writer.connection, checkpoint_s=1.0, monotonic=clock)
    opening = SessionStarted(SID, spec().model_dump(), tuple(personas()), INFO, 100.0)
    record(opening)
    follower = Follower(Store.open_read_only(db), "watch", alive=lambda pid, host: True)  # an id prefix
    first = follower.poll().events
    assert kinds(first) == ["SessionStarted"]
    started = first[0]
    assert isinstance(started, SessionStarted) and started.participants == opening.participants
    assert started.spec["motion"] == spec().motion and started.engine.model_name == "scripted"
    assert follower.poll().events == []  # nothing committed since: data_version unchanged

    record(TurnStarted(SID, 0, "Ada", TurnKind.AGENT, 101.0, node="n0"))
    record(TokenStreamed(SID, 0, "Ada", "Hello "))  # within the checkpoint interval: not written yet
    assert kinds(follower.poll().events) == ["TurnStarted"]
    clock.now = 1.5
    record(TokenStreamed(SID, 0, "Ada", "world "))
    delta = follower.poll().events
    assert [e.text for e in delta if isinstance(e, TokenStreamed)] == ["Hello world "]
    clock.now = 3.0
    record(TokenStreamed(SID, 0, "Ada", "again."))
    assert [e.text for e in follower.poll().events if isinstance(e, TokenStreamed)] == ["again."]

    said = Turn(index=0, speaker="Ada", kind=TurnKind.AGENT, content="Hello world again.",
                status=TurnStatus.COMPLETE, started_at=101.0, finished_at=105.0, node="n0")
    record(TurnFinished(SID, said))
    finished = follower.poll().events
    assert kinds(finished) == ["TurnFinished"]
    assert isinstance(finished[0], TurnFinished) and finished[0].turn.content == "Hello world again."

    record(StanceMeasured(SID, "Ada", 0, 0, 0.75, "logits", 106.0))
    record(TurnStarted(SID, 1, "Bo", TurnKind.AGENT, 107.0, node="n1", parent="n0"))
    failed = Turn(index=1, speaker="Bo", kind=TurnKind.AGENT, content="", status=TurnStatus.FAILED,
                  started_at=107.0, finished_at=108.0, node="n1", parent="n0", error="boom")
    record(TurnFailed(SID, failed, "boom"))
    batch = follower.poll().events
    assert kinds(batch) == ["TurnStarted", "TurnFailed", "StanceMeasured"]
    assert isinstance(batch[1], TurnFailed) and batch[1].error == "boom"
    assert isinstance(batch[2], StanceMeasured) and batch[2].p_for == 0.75

    record(OutcomeDecided(SID, (Vote("Ada", "for", 0.75), Vote("Bo", "against", 0.2)), 1, 1, "tied", "Tied.", 110.0))
    record(MinutesWritten(SID, "The minutes.", 111.0))
    end = follower.poll().events
    assert kinds(end) == ["OutcomeDecided", "MinutesWritten"]
    assert isinstance(end[0], OutcomeDecided) and end[0].votes_for == 1 and end[0].announcement == "Tied."
    assert isinstance(end[1], MinutesWritten) and end[1].text == "The minutes."

    record(SessionEnded(SID, "max_turns", 112.0, 2))
    last = follower.poll()
    assert kinds(last.events) == ["SessionEnded"] and follower.ended
    assert isinstance(last.events[0], SessionEnded) and last.events[0].reason == "max_turns"
    assert follower.poll().events == [] and last.writer_gone is None
    writer.close()


async def test_the_first_poll_replays_the_session_so_far(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    writer = Store.open(db)
    await record_debate(writer, SID, [("Cy", "Welcome."), ("Ada", "Build it."), ("Bo", "Too dear.")], outcome=True)
    events = Follower(Store.open_read_only(db), SID).poll().events
    assert kinds(events)[0] == "SessionStarted" and kinds(events)[-1] == "SessionEnded"
    assert [e.turn.content for e in events if isinstance(e, TurnFinished)] == ["Welcome.", "Build it.", "Too dear."]
    assert len([e for e in events if isinstance(e, StanceMeasured)]) == 4
    assert kinds(events).count("OutcomeDecided") == kinds(events).count("MinutesWritten") == 1
    writer.close()


async def test_a_changed_path_is_a_branch_switch_from_its_first_difference(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    writer = Store.open(db)
    made = await record_branched(writer)
    follower = Follower(Store.open_read_only(db), "tree01")
    before = [e.turn.node for e in follower.poll().events if isinstance(e, TurnFinished)]
    assert before == [made["t0"].node, made["t1e"].node]  # branch 4: turn 0, then the edited turn 1
    writer.switch_branch("tree01", 2)  # the writer picks another branch: turns 0, 1, 2b
    events = follower.poll().events
    assert kinds(events) == ["BranchSwitched"]
    switch = events[0]
    assert isinstance(switch, BranchSwitched) and switch.branch == 2 and switch.from_index == 1
    assert [t.node for t in switch.turns] == [made["t0"].node, made["t1"].node, made["t2b"].node]
    assert follower.poll().events == []
    writer.close()


def streaming_writer(db: Path) -> Store:
    """A writer of one session whose first turn (node n0) is still streaming."""
    writer = Store.open(db)
    record = Recorder(writer.connection)
    record(SessionStarted(SID, spec().model_dump(), tuple(personas()), INFO, 100.0))
    record(TurnStarted(SID, 0, "Ada", TurnKind.AGENT, 101.0, node="n0"))
    return writer


def test_a_writer_gone_without_ending_is_reported_once(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    writer = streaming_writer(db)
    reader = Store.open_read_only(db)
    live = Follower(reader, SID)  # the writer is this process: alive
    assert live.poll().writer_gone is None
    gone = dead_pid()
    _, host = writer_identity()
    with writer.connection.transaction() as conn:
        conn.execute("UPDATE sessions SET writer_pid = ?, writer_host = ? WHERE id = ?", (gone, host, SID))
    assert live.poll().writer_gone == gone
    assert live.poll().writer_gone is None  # said once
    # A reader never recovers: the streaming turn of the dead writer stays as it was written.
    assert newest_running(Store.open_read_only(db)) is None
    assert writer.connection.query("SELECT status FROM turns WHERE node = 'n0'") == [{"status": "streaming"}]
    writer.close()


def test_the_follower_never_writes(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    writer = streaming_writer(db)
    version = writer.connection.conn.execute("PRAGMA data_version").fetchone()[0]
    reader = Store.open_read_only(db)
    follower = Follower(reader, SID, alive=lambda pid, host: False)
    for _ in range(3):
        follower.poll()
    # data_version moves for a connection only when another one commits: none did.
    assert writer.connection.conn.execute("PRAGMA data_version").fetchone()[0] == version
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.connection.conn.execute("UPDATE sessions SET title = 'x'")
    writer.close()


async def test_newest_running_and_clear_errors(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    with pytest.raises(StoreError, match="no database here"):
        Store.open_read_only(db)
    writer = Store.open(db)
    await record_debate(writer, "done01", [("Ada", "Done.")])
    reader = Store.open_read_only(db)
    assert newest_running(reader) is None
    record = Recorder(writer.connection)
    record(SessionStarted("live01", spec().model_dump(), tuple(personas()), INFO, 200.0))
    assert newest_running(reader) == "live01"
    assert newest_running(reader, alive=lambda pid, host: None) == "live01"  # another host's: cannot tell
    with pytest.raises(NotFoundError, match="no session"):
        Follower(reader, "nope")
    writer.close()
