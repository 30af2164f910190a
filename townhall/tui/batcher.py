"""Token batching: the scheduler's TokenStreamed events become one TokensArrived per frame.

Every batch re-parses Markdown and re-lays out the transcript, and the CPU is shared with
the model, so the TUI draws streamed text a dozen times a second rather than once a token.
A batch never spans two turns: a token of a new turn (or any other event, through
`flush`) sends what was pending first, so the transcript sees events in their real order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from townhall.domain.events import TokenStreamed
from townhall.tui.messages import TokensArrived

FRAME_S = 1 / 12  # batches per second


class Stoppable(Protocol):
    """What a Textual Timer offers that the batcher needs."""

    def stop(self) -> None: ...


Schedule = Callable[[float, Callable[[], None]], Stoppable]


@dataclass
class _Pending:
    session_id: str
    index: int
    speaker: str
    parts: list[str] = field(default_factory=list)


class TokenBatcher:
    """Collects tokens until the frame timer fires, then posts them as one message.

    `post` delivers a TokensArrived (a widget's `post_message`); `schedule` starts a
    one-shot timer (a widget's `set_timer`). Both come in so a test can drive it alone.
    """

    def __init__(self, post: Callable[[TokensArrived], object], schedule: Schedule, frame_s: float = FRAME_S) -> None:
        self._post = post
        self._schedule = schedule
        self._frame_s = frame_s
        self._pending: _Pending | None = None
        self._timer: Stoppable | None = None

    def add(self, event: TokenStreamed) -> None:
        pending = self._pending
        if pending is not None and (pending.session_id, pending.index) != (event.session_id, event.index):
            self.flush()
            pending = None
        if pending is None:
            pending = self._pending = _Pending(event.session_id, event.index, event.speaker)
        pending.parts.append(event.text)
        if self._timer is None:
            self._timer = self._schedule(self._frame_s, self.flush)

    def flush(self) -> None:
        """Post what is pending now (before any other event, and when a run ends)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None and pending.parts:
            self._post(TokensArrived(pending.session_id, pending.index, pending.speaker, "".join(pending.parts),
                                     len(pending.parts)))
