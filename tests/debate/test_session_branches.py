"""Branch ops through the session layer: a resumed plan carries the stored tree, ops queued
before the run are applied and recorded in a real SQLite file, and a later resume knows
every alternative."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from store_support import personas, spec
from townhall.domain.branches import TurnTree
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError
from townhall.debate.session import Session, SessionPlan, plan_resume, resumable_tree, run_session
from townhall.store import Store
from townhall.domain.turns import WATCHER, Turn, TurnKind, TurnStatus


def _engine() -> ScriptedEngine:
    counter = itertools.count(1)
    return ScriptedEngine(lambda request: (lambda n: f"Remark {n} about item{n} and item{n + 1}.")(next(counter)))


async def test_a_resumed_session_applies_branch_ops_and_the_store_keeps_every_branch(tmp_path: Path) -> None:
    db = tmp_path / "th.db"
    with Store.open(db) as store:
        first = await run_session(_engine(), SessionPlan(spec(max_turns=4), personas()), store=store)
        session_id = first.session_id
        original = store.turns(session_id)
        assert len(original) == 4

        plan = plan_resume(store, session_id, more_turns=1)
        assert plan.tree is not None and [t.node for t in plan.tree.path()] == [t.node for t in plan.history]
        session = Session(_engine(), plan, store=store)
        session.scheduler.edit(2, "The river floods every spring.")  # queued before the run
        assert (await session.run()).reason == "max_turns"  # the edit was this run's one turn

        tree = store.tree(session_id)
        assert tree.current == 2 and tree.branch(2).reason == "edit"
        path = store.turns(session_id)
        assert [t.node for t in path[:2]] == [t.node for t in original[:2]]
        assert path[2].content == "The river floods every spring." and path[2].author == WATCHER
        assert [t.node for t in tree.alternatives(path[2])] == [original[2].node, path[2].node]
        assert len(path) == 3

        plan = plan_resume(store, session_id, more_turns=1)
        assert plan.tree is not None and plan.tree.current == 2 and len(plan.tree.nodes) == 5
        session = Session(_engine(), plan, store=store)
        session.scheduler.switch_branch(1)
        assert (await session.run()).reason == "max_turns"
        tree = store.tree(session_id)
        assert tree.current == 1
        assert [t.node for t in store.turns(session_id)[:4]] == [t.node for t in original]
        assert len(store.turns(session_id)) == 5 and len(store.turns(session_id, branch=2)) == 3


def test_a_turn_left_streaming_at_the_end_of_the_path_becomes_a_sibling_of_the_next() -> None:
    done = Turn(0, "Ada", TurnKind.AGENT, "We need it.", TurnStatus.COMPLETE)
    cut = Turn(1, "Bo", TurnKind.AGENT, "Well", TurnStatus.STREAMING)
    tree = resumable_tree(TurnTree.linear([done, cut]), [done], "s1")
    assert tree.path() == [done] and cut.node in tree.nodes

    middle = Turn(1, "Bo", TurnKind.AGENT, "Well", TurnStatus.STREAMING)
    after = Turn(2, "Ada", TurnKind.AGENT, "Go on.", TurnStatus.COMPLETE)
    done = Turn(0, "Ada", TurnKind.AGENT, "We need it.", TurnStatus.COMPLETE)
    with pytest.raises(ConfigError, match=r"turn 1 of its current branch was never settled; .*fork s1 --at 0"):
        resumable_tree(TurnTree.linear([done, middle, after]), [done, after], "s1")
