"""The tree of branches: paths, alternatives and branch choice, with no engine or store."""

from __future__ import annotations

import pytest

from townhall.domain.branches import Branch, TurnTree, first_difference
from townhall.errors import ConfigError
from townhall.domain.turns import Turn, TurnKind


def said(speaker: str, text: str) -> Turn:
    return Turn(index=-1, speaker=speaker, kind=TurnKind.AGENT, content=text)


def debate(n: int) -> TurnTree:
    tree = TurnTree()
    for i in range(n):
        tree.add(said("AB"[i % 2], f"line {i}"))
    return tree


def test_add_links_and_numbers_turns_on_the_current_branch() -> None:
    tree = debate(3)
    path = tree.path()
    assert [t.index for t in path] == [0, 1, 2]
    assert path[0].parent is None and path[1].parent == path[0].node and path[2].parent == path[1].node
    assert {t.branch for t in path} == {1}
    assert tree.branch().head == path[2].node


def test_linear_links_a_plain_transcript() -> None:
    turns = [said("A", "a"), said("B", "b")]
    tree = TurnTree.linear(turns)
    assert tree.path() == turns and turns[1].parent == turns[0].node


def test_regenerating_a_turn_keeps_the_original_as_an_alternative() -> None:
    tree = debate(4)
    old = tree.path()
    third = old[2]
    branch = tree.branch_from(third.parent, "regenerate", at=5.0)
    again = tree.add(said(third.speaker, "line 2, drawn again"))
    assert tree.current == branch.number == 2 and branch.parent == 1 and branch.fork == old[1].node
    new = tree.path()
    assert [t.content for t in new] == ["line 0", "line 1", "line 2, drawn again"]
    assert again.index == 2 and again.branch == 2
    assert tree.alternatives(again) == [third, again]
    assert first_difference(old, new) == 2
    assert [t.content for t in tree.path(1)] == ["line 0", "line 1", "line 2", "line 3"]  # nothing lost


def test_picking_an_alternative_goes_to_the_branch_it_was_said_on() -> None:
    tree = debate(4)
    original = tree.path()[3]
    tree.branch_from(original.parent, "regenerate")
    tree.add(said("B", "other ending"))
    assert tree.branch_showing(original) == 1
    assert tree.switch(1)[-1] is original
    assert tree.branch_showing(original) == 1  # the current branch already holds it


def test_fork_shares_the_path_and_adds_nothing_until_a_turn_is_said() -> None:
    tree = debate(5)
    at = tree.path()[1]
    fork = tree.branch_from(at.node, "fork")
    assert [t.content for t in tree.path()] == ["line 0", "line 1"]
    tree.add(said("A", "a new direction"))
    assert [t.index for t in tree.path()] == [0, 1, 2]
    assert tree.holds(fork.number, at.node) and not tree.holds(fork.number, tree.path(1)[2].node)
    assert len(tree.children(at.node)) == 2


def test_a_fork_from_the_very_start_and_unknown_branches() -> None:
    tree = debate(2)
    tree.branch_from(None, "fork")
    assert tree.path() == []
    with pytest.raises(ConfigError, match="branch 9 does not exist"):
        tree.switch(9)
    with pytest.raises(ConfigError):
        TurnTree(branches=[Branch(1)], current=3)
    with pytest.raises(ConfigError):
        tree.branch_from("no-such-node", "fork")
