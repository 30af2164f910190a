"""Stop strings over a token stream: emit text as soon as it cannot be part of a stop."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed decoded pieces; get back the text that is safe to show.

    Text that could still be the start of a stop string is held back until the next
    piece decides it. When a stop string completes, everything from it on is dropped
    and `stopped` becomes True.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.stopped = False
        self.matched: str | None = None
        self._pending = ""

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        text = self._pending + piece
        first: tuple[int, str] | None = None
        for stop in self.stops:
            at = text.find(stop)
            if at != -1 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self.stopped = True
            self.matched = first[1]
            self._pending = ""
            return text[: first[0]]
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """End of stream without a stop: release what was held back."""
        rest, self._pending = self._pending, ""
        return "" if self.stopped else rest
