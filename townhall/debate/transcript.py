"""The session's turns as a run sees them: the tree, the current path, and what this run said.

`turns` is the current branch's path, what every agent sees; it is rebuilt when the path
changes. Which turns this run said matters for its budget (`max_turns` and the token budget
count only those) and for the closing phrase (only a line said in this run ends it), so it is
kept here and asked through one rule, `spent`.
"""

from __future__ import annotations

from collections.abc import Callable

from townhall.domain.branches import TurnTree
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnKind, TurnStatus, uses_turn_budget


class Transcript:
    def __init__(self, tree: TurnTree) -> None:
        self.tree = tree
        self.turns: list[Turn] = tree.path()
        self._said_here: set[str] = set()
        self.last_said: Turn | None = None  # the newest turn this run said (the one a reader is on)

    def add(self, turn: Turn) -> None:
        """Put a new turn at the end of the current branch (its index, parent and branch set)."""
        self.tree.add(turn)
        self.took_place(turn)

    def took_place(self, turn: Turn) -> None:
        """`turn`, already added to the tree at the end of the path (the branch service's
        edit), was said in this run."""
        self.turns.append(turn)
        self._said_here.add(turn.node)
        self.last_said = turn

    def reload(self) -> None:
        """Follow the tree's current path after it changed."""
        self.turns = self.tree.path()

    @property
    def said_anything(self) -> bool:
        """Whether this run said a turn, on any branch: a run that only flipped branches did not."""
        return bool(self._said_here)

    def spent(self) -> list[Turn]:
        """The turns of the current path that use this run's budget: said in this run, and
        counted by `turns.uses_turn_budget` (skipped turns and audience lines are free)."""
        return [t for t in self.turns if t.node in self._said_here and uses_turn_budget(t)]

    def closed_by(self, phrase: str | None) -> bool:
        """Whether the moderator said the closing phrase in a turn of this run on this path."""
        return any(t.node in self._said_here and closes(t, phrase) for t in self.turns)

    def ended_by(self, spec: TownHallSpec, elapsed: Callable[[], float]) -> str | None:
        """The end reason the spec gives this run on this path, if any: the closing phrase, then
        its budgets of turns, tokens and seconds (`elapsed` is read only when there is a time budget)."""
        if self.closed_by(spec.closing_phrase):
            return "closing_phrase"
        spent = self.spent()
        if spec.max_turns is not None and len(spent) >= spec.max_turns:
            return "max_turns"
        if spec.token_budget is not None:
            if sum(t.stats.generated_tokens for t in spent if t.stats) >= spec.token_budget:
                return "token_budget"
        if spec.time_budget_s is not None and elapsed() >= spec.time_budget_s:
            return "time_budget"
        return None


def closes(turn: Turn, phrase: str | None) -> bool:
    """A complete moderator's turn that says the closing phrase ends the debate."""
    return bool(
        turn.kind == TurnKind.MODERATOR
        and phrase
        and turn.status == TurnStatus.COMPLETE
        and phrase.casefold() in turn.content.casefold()
    )
