"""The token batcher alone: one message per frame, never spanning two turns, flushed on demand."""

from __future__ import annotations

from collections.abc import Callable

from townhall.domain.events import TokenStreamed
from townhall.tui.batcher import TokenBatcher
from townhall.tui.messages import TokensArrived


class ManualTimer:
    """A frame timer the test fires by hand."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def make() -> tuple[TokenBatcher, list[TokensArrived], list[ManualTimer]]:
    posted: list[TokensArrived] = []
    timers: list[ManualTimer] = []

    def schedule(delay: float, callback: Callable[[], None]) -> ManualTimer:
        timers.append(ManualTimer(callback))
        return timers[-1]

    return TokenBatcher(posted.append, schedule), posted, timers


def token(text: str, index: int = 0, session: str = "s") -> TokenStreamed:
    return TokenStreamed(session, index, "Stacy", text)


def test_tokens_of_one_frame_arrive_as_one_message() -> None:
    batcher, posted, timers = make()
    for piece in ("The ", "rail ", "yard"):
        batcher.add(token(piece))
    assert posted == [] and len(timers) == 1  # one timer for the frame, nothing sent yet
    timers[0].callback()
    assert [(m.text, m.pieces, m.index) for m in posted] == [("The rail yard", 3, 0)]
    batcher.add(token("again"))
    assert len(timers) == 2  # the next frame has its own timer


def test_a_new_turn_sends_the_old_one_first() -> None:
    batcher, posted, timers = make()
    batcher.add(token("end of zero", index=0))
    batcher.add(token("start of one", index=1))
    assert [(m.index, m.text) for m in posted] == [(0, "end of zero")]
    assert timers[0].stopped and len(timers) == 2
    batcher.flush()
    assert [(m.index, m.text) for m in posted] == [(0, "end of zero"), (1, "start of one")]


def test_flush_with_nothing_pending_sends_nothing() -> None:
    batcher, posted, _ = make()
    batcher.flush()
    assert posted == []
