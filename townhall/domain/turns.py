"""A turn: the unit the scheduler produces, the store keeps and the exports write."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from townhall.engine.base import GenerationStats, SamplingParams


class TurnKind(StrEnum):
    AGENT = "agent"
    MODERATOR = "moderator"
    AUDIENCE = "audience"
    SUMMARY = "summary"


class TurnStatus(StrEnum):
    STREAMING = "streaming"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    DEGENERATE = "degenerate"  # still not clean (townhall.debate.quality) after the resamples
    SKIPPED = "skipped"  # the watcher skipped it: nothing was said, and it uses no turn budget


@dataclass
class Turn:
    index: int
    speaker: str
    kind: TurnKind
    content: str = ""
    status: TurnStatus = TurnStatus.STREAMING
    started_at: float = 0.0  # epoch seconds
    finished_at: float | None = None
    stats: GenerationStats | None = None
    sampling: SamplingParams | None = None
    retries: int = 0
    error: str | None = None
    phase: str | None = None  # opening | questions | closing under the agenda policy, else None
    scripted: bool = False  # written by the scheduler from the agenda (a moderator's line), not the model
    # Its place in the session's tree of branches (townhall/domain/branches.py): `index` is its
    # position on the path from the first turn, `parent` the node it follows.
    node: str = field(default_factory=lambda: new_node_id(), compare=False)
    # The node of the turn before it on its path; None for the first turn.
    parent: str | None = field(default=None, compare=False)
    branch: int = 1  # the branch it was said on (1: the session's first)
    author: str | None = None  # WATCHER when the watcher wrote its text (an edit), else None
    # An audience line's way in (BOX, FILE, or what an API caller names), else None.
    source: str | None = None
    # Whom the line addressed by name: an audience line's participant, or the one a moderator's
    # hand-off gives the question to (debate/addressing.py); None when it named nobody.
    addressed: str | None = None
    # The node of the audience line this turn answers (the answer, or the moderator's hand-off):
    # such a turn is outside the agenda's plan, which goes on where it was.
    answers: str | None = None


WATCHER = "watcher"
BOX, FILE = "box", "file"  # where an audience line came from: the TUI's box, a watched file


def new_node_id() -> str:
    """A turn's id in the tree: unique across sessions, so imports and forks never collide."""
    return uuid.uuid4().hex[:16]


def uses_turn_budget(turn: Turn) -> bool:
    """Whether a turn counts against `max_turns` and the token budget.

    One rule for the scheduler (this run's budget) and for resuming (what a stored
    session has used): a persona spoke, or tried to; audience lines, skipped turns
    and the agenda's answers to the audience are free. Under the agenda (whose turns
    have a phase) an answer is said outside the plan, which the budget was sized to
    with the closing statements at its end; under the other policies the answer is
    the debate's next turn and counts like any other.
    """
    if turn.kind == TurnKind.AUDIENCE or turn.status == TurnStatus.SKIPPED:
        return False
    return turn.answers is None or turn.phase is None
