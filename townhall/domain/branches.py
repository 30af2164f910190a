"""A session's turns as a tree of branches: what regenerate, edit and fork make, what views read.

Every turn is a node whose `parent` is the turn before it on its path. A branch is a named
path: it grew from `fork` (the last node it shares with the branch it came from; None when
it shares nothing) and ends at `head`. A turn's alternatives are its siblings, the turns with
the same parent: a regenerated or edited turn is a sibling of the one it replaces, said on a
new branch, so nothing is ever overwritten. The current branch's path is the transcript
every agent sees and the one exports write by default.

Pure data with no SQL, engine or UI: the scheduler keeps one live, the store builds one from
its rows, the TUI, the CLI and the exports read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from townhall.errors import ConfigError
from townhall.domain.turns import Turn

BranchReason = Literal["start", "regenerate", "edit", "fork"]
BRANCH_REASONS: tuple[str, ...] = ("start", "regenerate", "edit", "fork")


@dataclass
class Branch:
    """One path through the tree. `number` is what users type (`--branch 2`); 1 is the first."""

    number: int
    parent: int | None = None  # the branch it grew from
    fork: str | None = None  # the last node it shares with `parent`; None: from the very start
    head: str | None = None  # its last turn; None while nothing is on it
    reason: str = "start"  # one of BRANCH_REASONS
    created_at: float = 0.0


class TurnTree:
    """Every turn of one session, on every branch, and which branch is current."""

    def __init__(self, turns: Iterable[Turn] = (), branches: Iterable[Branch] = (), current: int = 1) -> None:
        self.nodes: dict[str, Turn] = {}
        for turn in turns:  # in creation order: siblings are listed oldest first
            self.nodes[turn.node] = turn
        self.branches: dict[int, Branch] = {b.number: b for b in branches}
        if not self.branches:
            self.branches[1] = Branch(1)
        if current not in self.branches:
            raise ConfigError(f"branch {current} does not exist (branches: {self.numbers()})")
        self.current = current

    @classmethod
    def linear(cls, turns: Sequence[Turn]) -> TurnTree:
        """A one-branch tree from a plain transcript (a session from before branches, a test),
        each turn linked to the one before it."""
        previous: str | None = None
        for turn in turns:
            turn.parent, turn.branch = previous, 1
            previous = turn.node
        return cls(turns, [Branch(1, head=previous)], current=1)

    # -- reading ------------------------------------------------------------------------
    def numbers(self) -> list[int]:
        return sorted(self.branches)

    def branch(self, number: int | None = None) -> Branch:
        """Branch `number` (the current one when None); a clear error when there is none."""
        number = self.current if number is None else number
        found = self.branches.get(number)
        if found is None:
            raise ConfigError(f"branch {number} does not exist (branches: {', '.join(map(str, self.numbers()))})")
        return found

    def path(self, number: int | None = None) -> list[Turn]:
        """The turns of branch `number` (the current one), first to last."""
        turns: list[Turn] = []
        node = self.branch(number).head
        while node is not None:
            turn = self.nodes[node]
            turns.append(turn)
            node = turn.parent
        turns.reverse()
        return turns

    def children(self, node: str | None) -> list[Turn]:
        """The turns said right after `node` (after nothing: the first turns), oldest first."""
        return [t for t in self.nodes.values() if t.parent == node]

    def alternatives(self, turn: Turn) -> list[Turn]:
        """`turn` and every turn said in its place (the same parent), oldest first."""
        return self.children(turn.parent)

    def own_turns(self, number: int) -> list[Turn]:
        """The turns of branch `number` after its fork: what it added to the branch it grew from
        (the whole path for a branch that shares nothing)."""
        fork = self.branch(number).fork
        path = self.path(number)
        nodes = [t.node for t in path]
        return path[nodes.index(fork) + 1 :] if fork in nodes else path

    def holds(self, number: int, node: str) -> bool:
        """Whether branch `number`'s path goes through `node`."""
        at = self.branch(number).head
        while at is not None:
            if at == node:
                return True
            at = self.nodes[at].parent
        return False

    def branch_showing(self, turn: Turn) -> int:
        """The branch to make current when the watcher picks `turn` among its alternatives:
        the current one if its path already holds it, else the branch it was said on."""
        if self.holds(self.current, turn.node):
            return self.current
        return turn.branch

    # -- changing -----------------------------------------------------------------------
    def add(self, turn: Turn, number: int | None = None) -> Turn:
        """Put `turn` at the end of branch `number` (the current one): links it, numbers it."""
        branch = self.branch(number)
        turn.parent, turn.branch = branch.head, branch.number
        turn.index = 0 if branch.head is None else self.nodes[branch.head].index + 1
        self.nodes[turn.node] = turn
        branch.head = turn.node
        return turn

    def branch_from(self, fork: str | None, reason: str, at: float = 0.0, parent: int | None = None) -> Branch:
        """A new branch that shares branch `parent`'s path (the current one's) up to `fork` (None:
        shares nothing) and becomes current. Regenerate and edit then add the new turn; fork adds nothing."""
        if reason not in BRANCH_REASONS:
            raise ValueError(f"unknown branch reason {reason!r}")
        if fork is not None and fork not in self.nodes:
            raise ConfigError(f"turn {fork} is not in this session")
        grows_from = self.branch(parent).number
        branch = Branch(max(self.branches) + 1, parent=grows_from, fork=fork, head=fork, reason=reason,
                        created_at=at)
        self.branches[branch.number] = branch
        self.current = branch.number
        return branch

    def switch(self, number: int) -> list[Turn]:
        """Make branch `number` current; return its path."""
        self.branch(number)
        self.current = number
        return self.path()


def first_difference(old: Sequence[Turn], new: Sequence[Turn]) -> int:
    """The first position where two paths hold different turns (their common length if none)."""
    for i, (a, b) in enumerate(zip(old, new)):
        if a.node != b.node:
            return i
    return min(len(old), len(new))
