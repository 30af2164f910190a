"""Stances as the watcher reads them: each participant's side now, and the would-be result.

Pure functions over probe readings, shared by the roster, the stats chart, the tally
dialog and the sessions browser, so every place says the same side for the same number.
The side is the closing ballot's own rule (`townhall.debate.ballot.side_of`: for only when
P(for) is the larger share) and the would-be result its own count (`ballot.tally`); the
ballot itself is the scheduler's (`OutcomeDecided`), never recomputed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from townhall.debate import ballot
from townhall.debate.ballot import Result, Side, side_of, vote_from

def leaning(p_for: float) -> str:
    """'62% for' or '80% against': the side and how sure, never a bare number or a colour."""
    side = side_of(p_for)
    share = p_for if side == "for" else 1.0 - p_for
    return f"{round(share * 100)}% {side}"


def result_line(result: Result, votes_for: int, votes_against: int) -> str:
    """How the result reads in the tally: 'The motion would carry, 3 to 2.'"""
    high, low = max(votes_for, votes_against), min(votes_for, votes_against)
    if result == "tied":
        return f"The vote would be tied, {high} to {low}: the motion would not carry."
    verb = "carry" if result == "carried" else "be defeated"
    return f"The motion would {verb}, {high} to {low}."


@dataclass(frozen=True)
class TallyRow:
    agent: str
    p_for: float | None  # None: not measured yet
    side: Side | None


@dataclass(frozen=True)
class Tally:
    """The ballot as it would go now, from each participant's latest reading."""

    rows: tuple[TallyRow, ...]

    @property
    def votes_for(self) -> int:
        return sum(1 for row in self.rows if row.side == "for")

    @property
    def votes_against(self) -> int:
        return sum(1 for row in self.rows if row.side == "against")

    @property
    def measured(self) -> int:
        return self.votes_for + self.votes_against

    @property
    def result(self) -> Result:
        """The closing ballot's own count (`ballot.tally`) over the readings taken so far."""
        return ballot.tally([vote_from(row.agent, row.p_for) for row in self.rows if row.p_for is not None]).result

    @property
    def summary(self) -> str:
        if not self.measured:
            return "No stance has been measured yet."
        line = result_line(self.result, self.votes_for, self.votes_against)
        missing = len(self.rows) - self.measured
        return line + (f" ({missing} not measured yet)" if missing else "")


def tally(latest: Iterable[tuple[str, float | None]]) -> Tally:
    """`latest`: (participant, latest p_for or None), in speaking order."""
    return Tally(tuple(TallyRow(agent, p, None if p is None else side_of(p)) for agent, p in latest))
