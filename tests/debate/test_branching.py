"""The branch service alone: no engine, no scheduler, a tree as the store would load it.

Each op's checks (one-line ConfigErrors), what it does to the tree, and the events it yields
in order, with a fixed clock."""

from __future__ import annotations

import itertools

import pytest

from townhall.debate.branching import (
    BranchService,
    Edit,
    Fork,
    Regenerate,
    StepAlternative,
    SwitchBranch,
)
from townhall.domain.branches import TurnTree
from townhall.domain.events import BranchCreated, BranchSwitched, TokenStreamed, TurnFinished, TurnStarted
from townhall.domain.turns import WATCHER, Turn, TurnKind, TurnStatus
from townhall.errors import ConfigError


def said(speaker: str, text: str, kind: TurnKind = TurnKind.AGENT, scripted: bool = False) -> Turn:
    return Turn(index=-1, speaker=speaker, kind=kind, content=text, status=TurnStatus.COMPLETE, scripted=scripted,
                phase="opening")


def stored() -> TurnTree:
    """Four turns on branch 1: a scripted chair's line, two participants, an audience line."""
    tree = TurnTree()
    for turn in (said("Mo", "Welcome.", TurnKind.MODERATOR, scripted=True), said("Ann", "For it."),
                 said("Bob", "Against it."), said("Audience", "What about the ferry?", TurnKind.AUDIENCE)):
        tree.add(turn)
    return tree


def service(tree: TurnTree, speakers: tuple[str, ...] | None = None) -> BranchService:
    ticks = itertools.count(100)
    return BranchService(tree, "s1", clock=lambda: float(next(ticks)), speakers=speakers)


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_fork_makes_a_branch_and_switches_to_it_without_a_model() -> None:
    tree = stored()
    first = tree.path()
    events = service(tree).fork(1)
    assert kinds(events) == ["BranchCreated", "BranchSwitched"]
    created, switched = events
    assert isinstance(created, BranchCreated) and isinstance(switched, BranchSwitched)
    assert (created.session_id, created.branch, created.parent, created.fork, created.reason, created.at) == (
        "s1", 2, 1, first[1].node, "fork", 100.0)
    assert (switched.branch, switched.from_index, switched.at) == (2, 2, 101.0)
    assert [t.node for t in switched.turns] == [t.node for t in first[:2]]
    assert tree.current == 2 and tree.path(1) == first


def test_edit_says_the_watchers_turn_on_a_new_branch() -> None:
    tree = stored()
    original = tree.path()[2]
    events = service(tree).edit(2, "  I have changed my mind.  ")
    assert kinds(events) == ["BranchCreated", "BranchSwitched", "TurnStarted", "TokenStreamed", "TurnFinished"]
    created, switched, started, streamed, finished = events
    assert isinstance(created, BranchCreated) and created.reason == "edit" and created.fork == original.parent
    assert isinstance(switched, BranchSwitched) and switched.from_index == 2 and len(switched.turns) == 2
    edited = tree.path()[-1]
    assert isinstance(started, TurnStarted) and (started.index, started.speaker, started.node, started.parent,
                                                 started.branch, started.phase) == (
        2, "Bob", edited.node, original.parent, 2, "opening")
    assert isinstance(streamed, TokenStreamed) and streamed.text == "I have changed my mind."
    assert isinstance(finished, TurnFinished) and finished.turn is edited
    assert (edited.content, edited.author, edited.status, edited.kind) == (
        "I have changed my mind.", WATCHER, TurnStatus.COMPLETE, TurnKind.AGENT)
    assert (edited.started_at, edited.finished_at) == (102.0, 103.0)
    assert tree.alternatives(edited) == [original, edited]


def test_apply_changes_the_tree_as_it_is_consumed() -> None:
    """A caller that rebuilds on BranchSwitched sees the path the event names, not the edit after it."""
    tree = stored()
    branches = service(tree)
    applying = branches.apply(branches.edit_op(1, "Not so fast."))
    assert isinstance(next(applying), BranchCreated)
    switched = next(applying)
    assert isinstance(switched, BranchSwitched) and len(tree.path()) == len(switched.turns) == 1
    rest = list(applying)
    assert kinds(rest) == ["TurnStarted", "TokenStreamed", "TurnFinished"] and len(tree.path()) == 2


def test_an_edit_must_change_the_text() -> None:
    branches = service(stored())
    with pytest.raises(ConfigError, match="is the same as its current text"):
        branches.edit_op(1, " For it. ")
    with pytest.raises(ConfigError, match="turn 1 is empty: an edit needs some text"):
        branches.edit_op(1, "   ")
    assert branches.tree.numbers() == [1]


def test_no_such_turn_or_branch_is_one_line() -> None:
    branches = service(stored())
    with pytest.raises(ConfigError, match=r"^session s1 has no turn 7 \(its branch 1 has 4 turns, numbered 0 to 3\)$"):
        branches.fork_op(7)
    with pytest.raises(ConfigError, match=r"branch 4 does not exist \(branches: 1\)"):
        branches.switch_op(4)
    with pytest.raises(ConfigError, match="no turns yet"):
        service(TurnTree()).regenerate_op()
    with pytest.raises(ConfigError, match=r"has no turn 0 \(its branch 1 has 0 turns\)$"):
        service(TurnTree()).fork_op(0)


def test_only_generated_turns_of_speakers_taking_part_can_be_regenerated() -> None:
    branches = service(stored(), speakers=("Mo", "Ann"))
    with pytest.raises(ConfigError, match="scripted agenda line"):
        branches.regenerate_op(0)
    with pytest.raises(ConfigError, match="audience line"):
        branches.regenerate_op()
    with pytest.raises(ConfigError, match="Bob is not taking part"):
        branches.regenerate_op(2)
    op = branches.regenerate_op(1)
    assert op == Regenerate(branches.tree.path()[1].node)
    assert service(stored()).regenerate_op(2).node  # with no list of speakers, anyone's turn


def test_regenerate_makes_the_branch_and_leaves_the_turn_to_the_model() -> None:
    tree = stored()
    original = tree.path()[1]
    events = list(service(tree).apply(Regenerate(original.node)))
    assert kinds(events) == ["BranchCreated", "BranchSwitched"]
    assert isinstance(events[0], BranchCreated) and events[0].reason == "regenerate"
    assert [t.node for t in tree.path()] == [tree.path(1)[0].node]


def test_alternatives_step_and_wrap_and_the_branch_follows() -> None:
    tree = stored()
    branches = service(tree)
    first = tree.path()[1]
    with pytest.raises(ConfigError, match="turn 1 has no alternatives"):
        branches.alternative_op(1, 1)
    branches.edit(1, "Second version.")
    branches.edit(1, "Third version.")
    alternatives = tree.alternatives(first)
    assert tree.current == 3 and tree.path()[1] is alternatives[2]
    with pytest.raises(ConfigError, match="step must be"):
        branches.alternative_op(1, 0)

    events = branches.alternative(1, +1)  # past the newest: wraps to the oldest, on branch 1's path
    assert kinds(events) == ["BranchSwitched"] and tree.current == 1 and tree.path()[1] is first
    assert isinstance(events[0], BranchSwitched) and events[0].from_index == 1
    assert list(branches.apply(StepAlternative(9, 1))) == []  # the path is shorter now: nothing to do
    branches.alternative(1, -1)
    assert tree.path()[1] is alternatives[2]


def test_switch_to_the_current_branch_changes_nothing() -> None:
    tree = stored()
    branches = service(tree)
    branches.fork(0)
    assert branches.switch(2) == []
    events = branches.switch(1)
    assert kinds(events) == ["BranchSwitched"] and tree.current == 1
    assert isinstance(events[0], BranchSwitched) and events[0].from_index == 1


def test_an_op_on_another_branch_grows_from_it() -> None:
    """`townhall fork ID --at N --branch B`: the new branch grows from B, whichever is current."""
    tree = stored()
    branches = service(tree)
    branches.fork(1)  # branch 2: turns 0 and 1; current
    op = branches.fork_op(3, branch=1)
    assert op == Fork(tree.path(1)[3].node, 1)
    events = list(branches.apply(op))
    created = events[0]
    assert isinstance(created, BranchCreated) and (created.branch, created.parent) == (3, 1)
    assert [t.node for t in tree.path()] == [t.node for t in tree.path(1)]
    edited = branches.edit(0, "Good evening.", branch=1)
    assert isinstance(edited[0], BranchCreated) and edited[0].parent == 1
    assert isinstance(edited[-1], TurnFinished) and tree.path()[0].content == "Good evening."


def test_ops_are_plain_values_that_can_be_queued() -> None:
    tree = stored()
    branches = service(tree)
    node = tree.path()[1].node
    assert branches.edit_op(1, "New.") == Edit(node, "New.")
    assert branches.switch_op(1) == SwitchBranch(1)
    assert branches.regenerate_op(1) == Regenerate(node)
