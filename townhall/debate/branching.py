"""One rule set for changing a session's path: regenerate, edit, fork, step through alternatives, switch.

The live scheduler, `townhall fork`/`townhall edit` on a stored session and the TUI all change
a path the same way, through `BranchService`, so a rule (an edit must change the text, a
scripted line cannot be regenerated, ...) is written once. The service needs no engine and no
scheduler: it works on a `TurnTree` (the scheduler's live one, or one loaded from the store)
and yields the events that describe each change, for a bus or a store's recorder.

Two steps, so a live run can check at the call and apply at the next turn boundary:
- `*_op(...)` checks the arguments against the tree as it is now and returns the op (a frozen
  dataclass, one per kind of change), or raises ConfigError with one line;
- `apply(op)` changes the tree and yields, in order, BranchCreated when a branch is made,
  BranchSwitched with the new path, and for an edit the watcher's turn (TurnStarted,
  TokenStreamed, TurnFinished). It is a generator: the tree changes as it is consumed, so a
  caller that rebuilds its own state on BranchSwitched sees the path as the event says.
`edit`, `fork`, `alternative` and `switch` do both at once, for a stored session offline.
Only regenerating needs the model: `apply(Regenerate)` makes the branch and leaves the turn to
be drawn by whoever has the engine (the scheduler).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Union, assert_never

from townhall.debate.announcing import said_at_once
from townhall.domain.branches import TurnTree, first_difference
from townhall.domain.events import BranchCreated, BranchSwitched, TokenStreamed, TurnFinished, TurnStarted
from townhall.domain.turns import WATCHER, Turn, TurnKind
from townhall.errors import ConfigError


@dataclass(frozen=True)
class Regenerate:
    """Draw turn `node` again: the same speaker in the same phase, on a new branch from the turn
    before it. `branch` is the branch the new one grows from (None: the current one when applied)."""

    node: str
    branch: int | None = None


@dataclass(frozen=True)
class Edit:
    """The watcher's `text` in place of turn `node`, on a new branch; the original stays as an alternative."""

    node: str
    text: str
    branch: int | None = None


@dataclass(frozen=True)
class Fork:
    """A new branch sharing the path up to and including turn `node`; nothing is said on it yet."""

    node: str
    branch: int | None = None


@dataclass(frozen=True)
class StepAlternative:
    """Show the alternative `step` (+1/-1, wrapping) away from turn `index` of the current path.

    By position, read when applied: two queued steps are two steps, each from the one before."""

    index: int
    step: int


@dataclass(frozen=True)
class SwitchBranch:
    """Make branch `number` current."""

    number: int


BranchOp = Union[Regenerate, Edit, Fork, StepAlternative, SwitchBranch]
BranchEvent = Union[BranchCreated, BranchSwitched, TurnStarted, TokenStreamed, TurnFinished]


class BranchService:
    """Checks and applies branch ops on one session's tree.

    `speakers`, when given, are the names taking part now: a turn by anyone else can be edited
    but not regenerated (there is no persona to draw it). The clock stamps branches and turns.
    """

    def __init__(
        self,
        tree: TurnTree,
        session_id: str,
        clock: Callable[[], float] = time.time,
        speakers: Collection[str] | None = None,
    ) -> None:
        self.tree = tree
        self.session_id = session_id
        self.clock = clock
        self.speakers = speakers

    # -- checking: each returns the op to apply, or raises ConfigError ---------------------
    def turn_at(self, index: int | None, branch: int | None = None) -> Turn:
        """Turn `index` of `branch`'s path (the current branch; the last turn when `index` is None)."""
        number = self.tree.branch(branch).number
        path = self.tree.path(number)
        if index is None:
            if not path:
                raise ConfigError(f"session {self.session_id} has no turns yet")
            return path[-1]
        if not 0 <= index < len(path):
            raise ConfigError(
                f"session {self.session_id} has no turn {index} (its branch {number} has {len(path)} turns"
                + (f", numbered 0 to {len(path) - 1})" if path else ")")
            )
        return path[index]

    def check_regenerable(self, turn: Turn) -> None:
        """Only a turn drawn from the model, by someone taking part, can be drawn again."""
        if turn.kind == TurnKind.AUDIENCE or turn.scripted:
            what = "an audience line" if turn.kind == TurnKind.AUDIENCE else "a scripted agenda line"
            raise ConfigError(f"turn {turn.index} is {what}: it cannot be regenerated, only edited")
        if self.speakers is not None and turn.speaker not in self.speakers:
            raise ConfigError(f"turn {turn.index}'s speaker {turn.speaker} is not taking part: it can only be edited")

    def regenerate_op(self, index: int | None = None, branch: int | None = None) -> Regenerate:
        turn = self.turn_at(index, branch)
        self.check_regenerable(turn)
        return Regenerate(turn.node, branch)

    def edit_op(self, index: int, text: str, branch: int | None = None) -> Edit:
        """The watcher's words for turn `index`: some text, and not the text it already has."""
        turn = self.turn_at(index, branch)
        text = text.strip()
        if not text:
            raise ConfigError(f"the new text of turn {index} is empty: an edit needs some text "
                              "(to drop a turn, fork before it)")
        if text == turn.content.strip():
            raise ConfigError(f"the new text of turn {index} is the same as its current text; nothing to edit")
        return Edit(turn.node, text, branch)

    def fork_op(self, index: int, branch: int | None = None) -> Fork:
        return Fork(self.turn_at(index, branch).node, branch)

    def alternative_op(self, index: int, step: int) -> StepAlternative:
        turn = self.turn_at(index)
        if len(self.tree.alternatives(turn)) < 2:
            raise ConfigError(f"turn {turn.index} has no alternatives (regenerate or edit it to make one)")
        if step == 0:
            raise ConfigError("alternative: step must be +1 or -1")
        return StepAlternative(turn.index, step)

    def switch_op(self, number: int) -> SwitchBranch:
        self.tree.branch(number)  # a clear error naming the branches there are
        return SwitchBranch(number)

    # -- applying ---------------------------------------------------------------------------
    def apply(self, op: BranchOp) -> Iterator[BranchEvent]:
        """Change the tree as `op` says, yielding each event as its change is made.

        An op whose target an earlier op moved away (a step past the end of a shortened path)
        or that changes nothing (a switch to the current branch) yields nothing."""
        match op:
            case SwitchBranch(number=number):
                yield from self._switch(number)
            case StepAlternative(index=index, step=step):
                path = self.tree.path()
                if 0 <= index < len(path):
                    alternatives = self.tree.alternatives(path[index])
                    picked = alternatives[(alternatives.index(path[index]) + step) % len(alternatives)]
                    yield from self._switch(self.tree.branch_showing(picked))
            case Fork(node=node, branch=branch):
                yield from self._branch(node, "fork", branch)
            case Regenerate(node=node, branch=branch):
                yield from self._branch(self.tree.nodes[node].parent, "regenerate", branch)
            case Edit(node=node, text=text, branch=branch):
                original = self.tree.nodes[node]
                yield from self._branch(original.parent, "edit", branch)
                edited = Turn(index=original.index, speaker=original.speaker, kind=original.kind, content=text,
                              started_at=self.clock(), phase=original.phase, author=WATCHER)
                self.tree.add(edited)
                yield from said_at_once(self.session_id, edited, self.clock)
            case _:
                assert_never(op)

    # -- at once, for a stored session -------------------------------------------------------
    def edit(self, index: int, text: str, branch: int | None = None) -> list[BranchEvent]:
        return list(self.apply(self.edit_op(index, text, branch)))

    def fork(self, index: int, branch: int | None = None) -> list[BranchEvent]:
        return list(self.apply(self.fork_op(index, branch)))

    def alternative(self, index: int, step: int) -> list[BranchEvent]:
        return list(self.apply(self.alternative_op(index, step)))

    def switch(self, number: int) -> list[BranchEvent]:
        return list(self.apply(self.switch_op(number)))

    # -- the two changes every op is made of -------------------------------------------------
    def _branch(self, fork: str | None, reason: str, parent: int | None) -> Iterator[BranchEvent]:
        """A new branch sharing the path up to `fork`, made current."""
        old = self.tree.path()
        branch = self.tree.branch_from(fork, reason, self.clock(), parent=parent)
        yield BranchCreated(self.session_id, branch.number, branch.parent, branch.fork, reason, branch.created_at)
        yield self._switched(old)

    def _switch(self, number: int) -> Iterator[BranchEvent]:
        if number != self.tree.current:
            old = self.tree.path()
            self.tree.switch(number)
            yield self._switched(old)

    def _switched(self, old: list[Turn]) -> BranchSwitched:
        path = self.tree.path()
        start = first_difference(old, path)
        return BranchSwitched(self.session_id, self.tree.current, tuple(path), start, self.clock())
