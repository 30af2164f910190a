"""Branches in the record: migration 004 on an old file, the recorder on branch events, and the
Store's tree, fork, edit and switch, all on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from store_support import BRANCHED_ID, record_branched, record_debate
from townhall.cli.store_cmds import resume_session
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import NotFoundError, StoreError
from townhall.store import Store
from townhall.store.database import latest_version, migrations
from townhall.domain.turns import WATCHER, TurnStatus


def _v3_database(path: Path) -> None:
    """A file as Townhall before branches wrote it: two sessions, turns inserted out of index order."""
    conn = sqlite3.connect(path)
    for step in migrations()[:3]:
        conn.executescript(step.sql())
    conn.execute("PRAGMA user_version = 3")
    for sid in ("old3", "other"):
        conn.execute("INSERT INTO sessions(id, motion, spec, created_at, updated_at, status) "
                     f"VALUES ('{sid}', 'Old motion', '{{}}', 1, 1, 'finished')")
    rows = [("old3", 1, "Bo", "the ferry is slow"), ("other", 0, "Cy", "order please"),
            ("old3", 0, "Ada", "the aqueduct leaks"), ("old3", 2, "Ada", "mend the aqueduct first")]
    for sid, index, speaker, content in rows:
        conn.execute("INSERT INTO turns(session_id, turn_index, speaker, kind, content, status) "
                     "VALUES (?, ?, ?, 'agent', ?, 'complete')", (sid, index, speaker, content))
    conn.execute("INSERT INTO stances(session_id, round, turn_index, agent, p_for, method, at) "
                 "VALUES ('old3', 1, 1, 'Ada', 0.7, 'logits', 5)")
    conn.execute("INSERT INTO outcomes(session_id, result, votes_for, votes_against, minutes) "
                 "VALUES ('old3', 'carried', 2, 0, 'The aqueduct minutes.')")
    conn.commit()
    conn.close()


def test_v3_database_upgrades_in_place_to_one_branch_per_session(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    _v3_database(path)
    with Store.open(path) as store:
        assert store.schema_version() == latest_version() >= 4
        turns = store.turns("old3")
        assert [t.content for t in turns] == ["the aqueduct leaks", "the ferry is slow", "mend the aqueduct first"]
        assert [t.parent for t in turns] == [None, turns[0].node, turns[1].node]
        assert {t.branch for t in turns} == {1} and all(t.author is None for t in turns)
        ids = dict(store.connection.conn.execute("SELECT node, id FROM turns").fetchall())
        assert all(node == f"{ids[node]:016x}" for node in ids)  # node from the row id
        tree = store.tree("old3")
        assert tree.numbers() == [1] and tree.current == 1 and tree.branch(1).head == turns[-1].node
        summary = store.get_session("old3").summary
        assert (summary.turns, summary.current_branch, summary.branch_count) == (3, 1, 1)
        assert [t.content for t in store.turns("other")] == ["order please"]
        # the old rows are still found, their ids kept under the external-content indexes
        hits = store.search("aqueduct")
        assert sorted((h.session_id, h.turn_index, h.kind, h.branches) for h in hits) == [
            ("old3", -1, "minutes", (1,)), ("old3", 0, "agent", (1,)), ("old3", 2, "agent", (1,))]
        conn = store.connection.conn
        conn.execute("INSERT INTO turns_fts(turns_fts) VALUES ('integrity-check')")
        conn.execute("INSERT INTO minutes_fts(minutes_fts) VALUES ('integrity-check')")
        outcome = store.outcome_of("old3")
        assert outcome is not None and outcome.result == "carried" and outcome.branch == 1
        assert [s.turn_index for s in store.stances_of("old3")] == [1]
        # several alternatives can now share an index; new rows are still indexed for search
        branch = store.edit_turn("old3", 1, "the bridge is slow")
        assert branch == 2 and [h.branches for h in store.search("bridge")] == [(2,)]
        assert [t.content for t in store.turns("old3", branch=1)][1] == "the ferry is slow"


async def test_recorder_keeps_every_branch_and_the_current_one(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        made = await record_branched(store)
        tree = store.tree(BRANCHED_ID)
        assert tree.numbers() == [1, 2, 3, 4] and tree.current == 4
        assert [b.reason for b in tree.branches.values()] == ["start", "regenerate", "regenerate", "edit"]
        assert [(b.parent, b.fork) for b in tree.branches.values()][1:] == [
            (1, made["t1"].node), (2, made["t1"].node), (2, made["t0"].node)]
        names = {t.node: name for name, t in made.items()}
        assert [names[t.node] for t in store.turns(BRANCHED_ID, branch=1)] == ["t0", "t1", "t2", "t3"]
        assert [names[t.node] for t in store.turns(BRANCHED_ID, branch=2)] == ["t0", "t1", "t2b"]
        assert [names[t.node] for t in store.turns(BRANCHED_ID, branch=3)] == ["t0", "t1", "t2c"]
        current = store.turns(BRANCHED_ID)
        assert [names[t.node] for t in current] == ["t0", "t1e"]
        assert current[1].author == WATCHER and current[1].branch == 4 and current[1].index == 1
        assert [names[t.node] for t in tree.alternatives(made["t2"])] == ["t2", "t2b", "t2c"]
        assert tree.nodes[made["t2c"].node].status == TurnStatus.DEGENERATE
        # the text said on each branch, all streamed rows settled
        assert all(t.status != TurnStatus.STREAMING for t in tree.nodes.values())
        assert tree.nodes[made["t2b"].node].content == "Concrete is the answer"
        # stances: what was read along each path; the outcome of the branch that was voted on
        assert [s.turn_index for s in store.stances_of(BRANCHED_ID, branch=1)] == [1, 3]
        assert [s.turn_index for s in store.stances_of(BRANCHED_ID, branch=2)] == [1, 2]
        assert [s.turn_index for s in store.stances_of(BRANCHED_ID)] == []  # branch 4 forked after turn 0
        assert store.outcome_of(BRANCHED_ID) is None and store.outcome_of(BRANCHED_ID, branch=1) is None
        voted = store.outcome_of(BRANCHED_ID, branch=2)
        assert voted is not None and voted.result == "tied" and voted.minutes == "Minutes of the concrete branch."
        summary = store.get_session(BRANCHED_ID).summary
        assert (summary.turns, summary.current_branch, summary.branch_count) == (2, 4, 4)
        types = [e.type for e in store.get_session(BRANCHED_ID).events]
        assert types.count("branch") == 3 and types.count("switch") == 4
        # search covers every branch and says which hold the turn
        [steel] = store.search('"steel bridges"')
        assert (steel.turn_index, steel.branch, steel.branches) == (0, 1, (1, 2, 3, 4))
        [concrete] = [h for h in store.search("concrete") if h.kind == "agent"]
        assert (concrete.turn_index, concrete.branch, concrete.branches) == (2, 2, (2,))
        [minutes] = [h for h in store.search("concrete") if h.kind == "minutes"]
        assert minutes.branches == (2,)


async def test_fork_edit_and_switch_make_branches_and_refuse_bad_numbers(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        await record_debate(store, "lin", [("Ada", "one"), ("Bo", "two"), ("Ada", "three")])
        assert store.fork("lin", at=1) == 2
        assert store.tree("lin").current == 2 and [t.content for t in store.turns("lin")] == ["one", "two"]
        edited = store.edit_turn("lin", 0, "  uno  ", branch=1)
        assert edited == 3
        [first] = store.turns("lin")
        assert (first.content, first.author, first.status, first.branch) == ("uno", WATCHER, TurnStatus.COMPLETE, 3)
        assert [t.content for t in store.tree("lin").alternatives(first)] == ["one", "uno"]
        store.switch_branch("lin", 1)
        assert [t.content for t in store.turns("lin")] == ["one", "two", "three"]
        assert store.get_session("lin").summary.current_branch == 1
        with pytest.raises(NotFoundError) as info:
            store.fork("lin", at=40, branch=2)
        assert str(info.value) == "session lin has no turn 40 (its branch 2 has 2 turns, numbered 0 to 1)"
        with pytest.raises(NotFoundError, match=r"has no branch 9 \(branches: 1, 2, 3\)"):
            store.switch_branch("lin", 9)
        with pytest.raises(NotFoundError, match="no branch 9"):
            store.turns("lin", branch=9)
        with pytest.raises(StoreError, match="same as its current text"):
            store.edit_turn("lin", 2, "three ")
        with pytest.raises(StoreError, match="is empty"):
            store.edit_turn("lin", 2, "  \n ")
        assert store.tree("lin").numbers() == [1, 2, 3]  # the refused edits made nothing
        await record_debate(store, "live", [("Ada", "still talking")], end=None)
        with pytest.raises(StoreError, match="still running"):
            store.fork("live", at=0)


async def test_resume_after_a_fork_goes_on_from_the_fork(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        await record_debate(store, "lin", [("Ada", "one"), ("Bo", "two"), ("Ada", "three")], end="stopped")
        fork_node = store.turns("lin")[1].node
        assert store.fork("lin", at=1) == 2
        await resume_session(store, "lin", ScriptedEngine(["A new direction."]), turns=1)
        path = store.turns("lin")
        assert [t.index for t in path] == [0, 1, 2] and path[2].content.strip() == "A new direction."
        assert path[2].parent == fork_node and path[2].branch == 2
        assert [t.content for t in store.turns("lin", branch=1)] == ["one", "two", "three"]


async def test_a_streaming_alternative_is_checkpointed_and_cut_by_its_node(tmp_path: Path) -> None:
    """Two rows share index 1 (the original and its regeneration): tokens, checkpoints and the
    close of a cut-off turn touch only the streaming one, found by the node its TurnStarted gave."""
    from store_support import personas, spec
    from townhall.domain.branches import TurnTree
    from townhall.engine.base import EngineInfo
    from townhall.domain.events import (BranchCreated, BranchSwitched, EventBus, SessionStarted, TokenStreamed,
                                 TurnFinished, TurnStarted)
    from townhall.store.recorder import Recorder
    from townhall.domain.turns import Turn, TurnKind

    path = tmp_path / "th.db"
    store = Store.open(path)
    bus = EventBus()
    clock = iter([0.0, 0.0, 0.0, 3.0, 3.1]).__next__
    recorder = Recorder(store.connection, checkpoint_s=2.0, monotonic=clock)
    bus.subscribe(recorder)
    info = EngineInfo(backend="scripted", model_name="scripted", n_ctx=2048, device="CPU")
    await bus.apublish(SessionStarted("cp", spec().model_dump(), tuple(personas()), info, 1.0))
    tree = TurnTree()
    for i, (speaker, text) in enumerate([("Ada", "first"), ("Bo", "second")]):
        turn = tree.add(Turn(0, speaker, TurnKind.AGENT, started_at=2.0 + i))
        await bus.apublish(TurnStarted("cp", turn.index, speaker, TurnKind.AGENT, turn.started_at, node=turn.node,
                                       parent=turn.parent, branch=turn.branch))
        turn.content, turn.status = text, TurnStatus.COMPLETE
        await bus.apublish(TurnFinished("cp", turn))
    first = tree.path()[0]
    branch = tree.branch_from(first.node, "regenerate", 5.0)
    await bus.apublish(BranchCreated("cp", branch.number, 1, first.node, "regenerate", 5.0))
    await bus.apublish(BranchSwitched("cp", branch.number, tuple(tree.path()), 1, 5.0))
    again = tree.add(Turn(0, "Bo", TurnKind.AGENT, started_at=6.0))
    await bus.apublish(TurnStarted("cp", 1, "Bo", TurnKind.AGENT, 6.0, node=again.node, parent=first.node, branch=2))
    await bus.apublish(TokenStreamed("cp", 1, "Bo", "third "))  # clock 3.0: checkpoint
    await bus.apublish(TokenStreamed("cp", 1, "Bo", "try"))  # 3.1: not yet
    rows = "SELECT branch, content, status FROM turns WHERE turn_index = 1 ORDER BY id"
    conn = sqlite3.connect(path)
    assert conn.execute(rows).fetchall() == [(1, "second", "complete"), (2, "third ", "streaming")]
    recorder.close(now=9.0)
    assert conn.execute(rows).fetchall() == [(1, "second", "complete"), (2, "third try", "interrupted")]
    conn.close()
    assert [t.content for t in store.turns("cp")] == ["first", "third try"]
    assert [t.content for t in store.turns("cp", branch=1)] == ["first", "second"]
    store.close()


async def test_a_one_branch_scheduler_resumed_on_a_fork_at_the_end_extends_the_fork(tmp_path: Path) -> None:
    """Branches 1 and 2 end at the same turn; the turns of a scheduler that only knows a linear
    history (it says branch 1) go on the current branch, not on branch 1."""
    with Store.open(tmp_path / "th.db") as store:
        await record_debate(store, "lin", [("Ada", "one"), ("Bo", "two")], end="stopped")
        assert store.fork("lin", at=1) == 2
        await resume_session(store, "lin", ScriptedEngine(["Onwards."]), turns=1)
        assert [t.content.strip() for t in store.turns("lin")] == ["one", "two", "Onwards."]
        assert [t.content for t in store.turns("lin", branch=1)] == ["one", "two"]
        assert store.turns("lin")[2].branch == 2


async def test_a_new_turn_ends_its_branch_even_after_a_step_back(tmp_path: Path) -> None:
    """A resumed scheduler that steps back over a half-said last turn says the next one after the
    turn before it: the record keeps the half-said one as an alternative and the branch ends at the new one."""
    from store_support import personas, spec
    from townhall.engine.base import EngineInfo
    from townhall.domain.events import EventBus, SessionStarted, TurnFinished, TurnStarted
    from townhall.domain.turns import Turn, TurnKind

    with Store.open(tmp_path / "th.db") as store:
        await record_debate(store, "s", [("Ada", "one"), ("Bo", "half a")], end="stopped")
        first, half = store.turns("s")
        bus = EventBus()
        store.attach(bus)
        info = EngineInfo(backend="scripted", model_name="scripted", n_ctx=2048, device="CPU")
        await bus.apublish(SessionStarted("s", spec().model_dump(), tuple(personas()), info, 9.0, resumed=True))
        turn = Turn(1, "Bo", TurnKind.AGENT, content="whole", status=TurnStatus.COMPLETE, started_at=10.0,
                    parent=first.node)
        await bus.apublish(TurnStarted("s", 1, "Bo", TurnKind.AGENT, 10.0, node=turn.node, parent=first.node))
        await bus.apublish(TurnFinished("s", turn))
        assert [t.content for t in store.turns("s")] == ["one", "whole"]
        assert [t.content for t in store.tree("s").alternatives(turn)] == ["half a", "whole"]
        assert store.tree("s").numbers() == [1] and half.node in store.tree("s").nodes
