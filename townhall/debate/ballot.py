"""The closing ballot and the minutes: counting votes, the moderator's line, the minutes' frame.

Pure functions over plain values, so the rules are tested without a model. The scheduler
reads each participant's P(for) from its own state (the stance probe) and calls these.

Minutes keep to what is known for certain: the scheduler writes the frame (motion, result,
tally, one line per participant with the side it was given and the way it voted) and the
model only fills in each participant's reason. On the 270M base model a free-form summary
invents votes and names; a reason of one clause cannot misstate the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from townhall.domain.events import Result, Side, Vote

VOTE_PHASE = "vote"  # the phase of the chair's announcement: a turn outside the debate's own count
MAX_REASON_CHARS = 200


def side_of(p_for: float) -> Side:
    """The side a probe reading votes: for when P(for) is the larger share, else against."""
    return "for" if p_for > 0.5 else "against"


def vote_from(agent: str, p_for: float) -> Vote:
    """A vote from a probe reading (`side_of`)."""
    return Vote(agent=agent, choice=side_of(p_for), p_for=p_for)


def result_of(votes_for: int, votes_against: int) -> Result:
    """A tie does not carry (no casting vote: the chair takes no side)."""
    if votes_for > votes_against:
        return "carried"
    if votes_against > votes_for:
        return "defeated"
    return "tied"


@dataclass(frozen=True)
class VoteCount:
    """The closing ballot counted: the votes, the totals, the result and the chair's line."""

    votes: tuple[Vote, ...]
    votes_for: int
    votes_against: int
    result: Result
    announcement: str


def tally(votes: Sequence[Vote]) -> VoteCount:
    """Count the votes and word the result as the chair announces it."""
    n_for = sum(1 for v in votes if v.choice == "for")
    n_against = len(votes) - n_for
    result = result_of(n_for, n_against)
    if result == "carried":
        line = f"The motion carries, {n_for} to {n_against}."
    elif result == "defeated":
        line = f"The motion is defeated, {n_against} to {n_for}."
    else:
        line = f"The vote is tied, {n_for} to {n_against}, so the motion does not carry."
    return VoteCount(tuple(votes), n_for, n_against, result, line)


def completed_rounds(spoken: Mapping[str, int], speakers: Sequence[str]) -> int:
    """Rounds every participant has finished: the fewest turns any of them has taken."""
    return min((spoken.get(name, 0) for name in speakers), default=0)


@dataclass(frozen=True)
class MinutesEntry:
    """One participant's line: who, the side they were given, how they voted, and why."""

    name: str
    title: str
    side: str | None  # for | against | undecided, as the town hall gave it; None if none
    vote: Vote
    reason: str


def clean_reason(text: str) -> str:
    """The model's reason as one plain clause: first line, first sentence, bounded, no quotes."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    for end in (". ", "! ", "? "):
        if end in line:
            line = line.split(end, 1)[0]
    line = line.strip().strip("\"'“”").rstrip(".!?,;: ").strip()
    if len(line) > MAX_REASON_CHARS:
        line = line[:MAX_REASON_CHARS].rsplit(" ", 1)[0] + "…"
    return line


def write_minutes(title: str | None, motion: str, outcome: VoteCount, entries: Sequence[MinutesEntry]) -> str:
    """The minutes as plain text (model words in it are data: never markup)."""
    head = f"Minutes of the {title}" if title else "Minutes of the town hall meeting"
    lines = [head, f"Motion: {' '.join(motion.split())}",
             f"Result: {outcome.announcement}", f"Votes: {outcome.votes_for} for, {outcome.votes_against} against.", ""]
    for entry in entries:
        given = {"for": "came in for the motion and ", "against": "came in against it and ",
                 "undecided": "came in undecided and "}.get(entry.side or "", "")
        who = f"{entry.name} ({entry.title})" if entry.title else entry.name
        line = f"- {who} {given}voted {entry.vote.choice} (P(for) {entry.vote.p_for:.2f})"
        lines.append(f"{line}, because {entry.reason}." if entry.reason else f"{line}.")
    return "\n".join(lines)
