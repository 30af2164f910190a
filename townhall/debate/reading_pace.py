"""The reading pace: how long a finished turn stays on show before the next speaker starts.

A small model says a turn in a second or two, far faster than anyone reads, so a front end
meant for watching (the TUI) holds each finished turn for the time it takes to read it at a
pace in words per minute; `None` is flat out, what `run`, `generate` and the benchmarks use.
The hold counts the time the turn already spent on screen while it streamed, so a slow model
is never slowed further, and a line said at once (the moderator's, an audience line) gets
its whole reading time.

The pace is plain state (no asyncio, no Textual): `RunControl` waits out each hold it
computes, the keys change it, and the views read it. Every hold computed is kept
(`holds`), so a test or a header reads the timing the app computes, not the wall clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from townhall.domain.turns import Turn
from townhall.errors import ConfigError

# Silent reading of prose runs about 240 words per minute for most adults (Brysbaert 2019,
# "How many words do we read per minute?"): a turn is readable at that pace without waiting long.
DEFAULT_WPM = 240
# The keys step through these: a slow reader, the usual pace, skimming.
STEPS: tuple[int, ...] = (120, 180, 240, 300, 400, 600, 900)
MAX_WPM = 100_000  # above this a hold is under a millisecond per word: flat out in all but name
FLAT_OUT_WORDS = ("max", "0")  # how `--pace` spells flat out


def reading_seconds(words: int, wpm: int | None) -> float:
    """The seconds `words` take to read at `wpm` words per minute; 0 flat out (`wpm` None)."""
    if wpm is None or words <= 0:
        return 0.0
    return words * 60.0 / wpm


def parse_pace(text: str, flag: str = "--pace") -> int | None:
    """`--pace` as given: words per minute, or `max`/`0` for flat out (None). A bad value is a
    ConfigError naming the flag."""
    value = text.strip().casefold()
    if value in FLAT_OUT_WORDS:
        return None
    try:
        wpm = int(value)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a pace; give words per minute (e.g. {DEFAULT_WPM}) "
                          f"or max for flat out") from None
    if not 0 < wpm <= MAX_WPM:
        raise ConfigError(f"{flag}: {wpm} words per minute is out of range; give 1 to {MAX_WPM}, or max for flat out")
    return wpm


@dataclass(frozen=True)
class Hold:
    """One hold computed after a turn: its words, the pace, the seconds it had already been on
    screen while it streamed, and the seconds the next turn waits."""

    index: int
    node: str
    words: int
    wpm: int
    shown: float
    seconds: float


class ReadingPace:
    """The pace in words per minute (None: flat out), the hold under way, and every hold computed.

    Changes (the pace, a hold beginning or ending) are announced to `subscribe`rs: the turn
    loop, so a new pace takes effect in the hold under way, and the views. `clock` is a
    monotonic clock for the hold under way (a test hands in its own).
    """

    def __init__(self, wpm: int | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.wpm = wpm
        self.clock = clock
        self.holds: list[Hold] = []
        self.holding: Hold | None = None
        self._began = 0.0
        self._previous = wpm or DEFAULT_WPM  # what "flat out" toggles back to
        self._observers: list[Callable[[], object]] = []

    # -- the pace --------------------------------------------------------------------------------
    @property
    def flat_out(self) -> bool:
        return self.wpm is None

    def label(self) -> str:
        return "flat out" if self.wpm is None else f"{self.wpm} wpm"

    def set_wpm(self, wpm: int | None) -> None:
        if wpm is not None:
            self._previous = wpm
        if wpm != self.wpm:
            self.wpm = wpm
            self._changed()

    def slower(self) -> None:
        """The next step down (flat out steps down to the fastest step)."""
        if self.wpm is None:
            self.set_wpm(STEPS[-1])
            return
        current = self.wpm
        self.set_wpm(max((s for s in STEPS if s < current), default=min(current, STEPS[0])))

    def faster(self) -> None:
        """The next step up; past the fastest step, flat out."""
        if self.wpm is None:
            return
        current = self.wpm
        self.set_wpm(min((s for s in STEPS if s > current), default=None))

    def toggle_flat_out(self) -> None:
        """Flat out, or back to the pace it had before."""
        self.set_wpm(self._previous if self.wpm is None else None)

    # -- holds -----------------------------------------------------------------------------------
    def hold_after(self, turn: Turn) -> Hold | None:
        """The hold after `turn` at the current pace, recorded; None flat out.

        Its reading time less the seconds it was on screen while it streamed
        (`finished_at - started_at`: nothing for a line said at once).
        """
        if self.wpm is None:
            return None
        words = len(turn.content.split())
        shown = max(0.0, (turn.finished_at or turn.started_at) - turn.started_at)
        hold = Hold(turn.index, turn.node, words, self.wpm, shown, max(0.0, reading_seconds(words, self.wpm) - shown))
        self.holds.append(hold)
        return hold

    def begin(self, hold: Hold) -> None:
        """The loop starts waiting out `hold`."""
        self.holding, self._began = hold, self.clock()
        self._changed()

    def end(self) -> None:
        if self.holding is not None:
            self.holding = None
            self._changed()

    def left(self) -> float:
        """Seconds still to wait in the hold under way, at the pace as it is now (0 when none)."""
        hold = self.holding
        if hold is None:
            return 0.0
        waited = self.clock() - self._began
        return max(0.0, reading_seconds(hold.words, self.wpm) - hold.shown - waited)

    def status(self) -> str:
        """What a header shows: the pace, and while a turn is held, the seconds left to read it."""
        left = self.left()
        return f"{self.label()} · reading {math.ceil(left)}s" if left > 0 else self.label()

    # -- observers -------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call `fn` after every change; returns the function that unsubscribes it."""
        self._observers.append(fn)
        return lambda: self._observers.remove(fn) if fn in self._observers else None

    def _changed(self) -> None:
        for fn in list(self._observers):
            fn()
