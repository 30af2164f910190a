"""A turn: the unit the scheduler produces, the store keeps and the exports write."""

from __future__ import annotations

from dataclasses import dataclass
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
    DEGENERATE = "degenerate"  # still not clean (townhall.quality) after the resamples


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
