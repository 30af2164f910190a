"""What the watcher asked of a run, kept for the turn loop: pace, stop, vote, skip, queues.

The controls are sync and safe to call from any callback on the scheduler's loop; each only
records the request and wakes the loop, which honours it at the next turn boundary (or, for
skip and interrupt, cancels the generation under way). `wait_until_runnable` is the loop's
one place to sleep while paused with nothing queued; `read` its place to hold a finished turn
on show at the reading pace (`reading_pace.py`), a wait any request ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Literal

from townhall.debate.branching import BranchOp
from townhall.debate.prompts import AUDIENCE
from townhall.debate.reading_pace import ReadingPace
from townhall.domain.turns import Turn
from townhall.engine.base import Generation
from townhall.errors import ConfigError

Cut = Literal["skip", "interrupt"]  # how the watcher cut the turn under way


@dataclass(frozen=True)
class Interjection:
    text: str
    speaker: str
    source: str | None = None  # its way in ("box", "file"...), recorded as `Turn.source`


@dataclass
class Pacing:
    """Whether the loop may start a turn.

    Paused, `steps` turns are granted (the step key; each is taken as its turn begins).
    Running, a step means: pause when the turn under way (or the next one) ends.
    """

    paused: bool = False
    steps: int = 0
    pause_after_turn: bool = False

    def pause(self) -> None:
        self.paused = True
        self.steps = 0

    def resume(self) -> None:
        self.paused = False
        self.steps = 0
        self.pause_after_turn = False

    def step(self) -> None:
        if self.paused:
            self.steps += 1
        else:
            self.pause_after_turn = True

    @property
    def held(self) -> bool:
        """Paused with no step granted: no turn may start."""
        return self.paused and self.steps == 0

    def turn_begins(self) -> None:
        if self.paused:
            self.steps -= 1

    def turn_ends(self) -> None:
        if self.pause_after_turn:
            self.pause_after_turn = False
            self.paused = True


@dataclass
class Floor:
    """Who speaks: the turn under way, and the next speaker when known (for views)."""

    current_speaker: str | None = None
    next_speaker: str | None = None


class RunControl:
    """The watcher's requests and the reading pace (flat out unless one is handed in)."""

    def __init__(self, reading_pace: ReadingPace | None = None) -> None:
        self.pacing = Pacing()
        self.reading_pace = reading_pace if reading_pace is not None else ReadingPace()
        self._read_last: str | None = None  # the node of the turn last held (each is held once)
        self._requests = 0  # counts the watcher's requests: one made during a hold ends it
        self.stop_requested = False
        self.vote_called = False
        self.skip_next = False  # skip the next speaker the policy would pick
        self.cut: Cut | None = None  # set while a generation is cut; cleared as each turn begins
        self.generation: Generation | None = None  # the one under way, so skip and interrupt can cancel it
        self.interjections: deque[Interjection] = deque()
        self.branch_ops: deque[BranchOp] = deque()
        self.pause_announced = False  # Paused went out and Resumed has not yet
        self._wake = asyncio.Event()

    def _asked(self) -> None:
        """A request came: count it and wake the loop."""
        self._requests += 1
        self._wake.set()

    # -- the watcher's requests ---------------------------------------------------------------
    def pause(self) -> None:
        self.pacing.pause()
        self._asked()

    def resume(self) -> None:
        self.pacing.resume()
        self._asked()

    def step(self) -> None:
        self.pacing.step()
        self._asked()

    def skip(self) -> None:
        """Drop the turn being generated (its text is discarded), else skip the next speaker."""
        if self.generation is not None:
            self.cut = "skip"
            self.generation.cancel()
        else:
            self.skip_next = True
        self._asked()

    def interrupt(self) -> None:
        """Stop the turn being generated; the text so far is kept (a skip already asked wins)."""
        if self.generation is not None:
            self.cut = self.cut or "interrupt"
            self.generation.cancel()

    def interject(self, text: str, speaker: str = AUDIENCE, source: str | None = None) -> Interjection:
        """Queue a line from the floor; it becomes the next turn. Taken even while paused."""
        text = text.strip()
        speaker = (speaker or AUDIENCE).strip()
        if not text:
            raise ConfigError("an interjection needs some text")
        if not speaker or any(ch in speaker for ch in ":\n\r\t") or len(speaker) > 40:
            raise ConfigError("the interjecting speaker's name must be one short line without ':'")
        item = Interjection(text, speaker, source)
        self.interjections.append(item)
        self._asked()
        return item

    def queue(self, op: BranchOp) -> None:
        """A branch op, already checked, applied at the next turn boundary."""
        self.branch_ops.append(op)
        self._asked()

    def stop(self) -> None:
        self.stop_requested = True
        self._asked()

    def call_vote(self) -> None:
        self.vote_called = True
        self._asked()

    # -- what the loop asks -------------------------------------------------------------------
    def next_branch_op(self) -> BranchOp | None:
        """The next queued branch op; none once a stop is asked (`stop()` drops them)."""
        if self.branch_ops and not self.stop_requested:
            return self.branch_ops.popleft()
        return None

    def take_skip(self) -> bool:
        """Whether the watcher asked to skip the next speaker; the request is used up."""
        asked, self.skip_next = self.skip_next, False
        return asked

    async def wait_until_runnable(self) -> None:
        """Sleep while paused with nothing to do; any request wakes the loop to look again."""
        self._wake.clear()
        idle = not (self.interjections or self.stop_requested or self.vote_called or self.branch_ops)
        if self.pacing.held and idle:
            await self._wake.wait()

    def _request_waiting(self) -> bool:
        """A request made while the turn was said, which the loop must see to at once."""
        return bool(self.interjections or self.branch_ops or self.stop_requested or self.vote_called
                    or self.pacing.paused or self.skip_next)

    async def read(self, turn: Turn | None) -> None:
        """Hold `turn`, just said, on show for its reading time (once; nothing flat out).

        Any request (an interjection, pause, step, skip, stop, vote, branch op) ends the hold at
        once and the loop then handles it as ever; a change of pace re-computes what is left.
        """
        if turn is None or turn.node == self._read_last:
            return
        self._read_last = turn.node
        pace = self.reading_pace
        hold = pace.hold_after(turn)
        if hold is None or hold.seconds <= 0 or self._request_waiting():
            return
        asked = self._requests
        pace.begin(hold)
        unsubscribe = pace.subscribe(self._wake.set)  # after `begin`, so only a change of pace wakes it
        try:
            while self._requests == asked and (left := pace.left()) > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
        finally:
            unsubscribe()
            pace.end()
