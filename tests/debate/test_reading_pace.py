"""The reading pace: the hold after each turn, and the scheduler waiting it out between turns.

Assertions are on the holds the pace computes (`ReadingPace.holds`), never on wall time;
the scheduler's clock is fixed, so a streamed turn counts as shown for no time at all.
"""

from __future__ import annotations

import asyncio

import pytest

from conftest import wait_until
from townhall.debate.reading_pace import DEFAULT_WPM, STEPS, ReadingPace, parse_pace, reading_seconds
from townhall.debate.scheduler import Scheduler
from townhall.domain.events import Paused, TurnFinished
from townhall.domain.turns import Turn, TurnKind, TurnStatus
from townhall.engine.scripted import ScriptedEngine
from townhall.errors import ConfigError

from test_scheduler import PEOPLE, record, spec

FIXED = 1_000.0


def said(words: int, started: float = 100.0, finished: float | None = 100.0, index: int = 0) -> Turn:
    return Turn(index=index, speaker="Ann", kind=TurnKind.AGENT, content=" ".join(["word"] * words),
                status=TurnStatus.COMPLETE, started_at=started, finished_at=finished)


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- the pace alone ---------------------------------------------------------------------------
def test_reading_seconds_follows_words_and_pace() -> None:
    assert reading_seconds(240, 240) == 60.0
    assert reading_seconds(10, 120) == 5.0
    assert reading_seconds(10, None) == 0.0 and reading_seconds(0, 240) == 0.0


def test_a_line_said_at_once_gets_its_whole_reading_time() -> None:
    pace = ReadingPace(240)
    hold = pace.hold_after(said(10))
    assert hold is not None and (hold.words, hold.wpm, hold.shown, hold.seconds) == (10, 240, 0.0, 2.5)
    assert pace.holds == [hold]


def test_a_streamed_turn_is_held_for_what_was_not_yet_read() -> None:
    pace = ReadingPace(240)
    hold = pace.hold_after(said(10, started=100.0, finished=101.5))
    assert hold is not None and (hold.shown, hold.seconds) == (1.5, 1.0)
    slow_model = pace.hold_after(said(10, started=100.0, finished=110.0, index=1))
    assert slow_model is not None and slow_model.seconds == 0.0, "a turn streamed slower than it reads waits no more"
    assert [h.index for h in pace.holds] == [0, 1]


def test_flat_out_computes_no_hold() -> None:
    pace = ReadingPace()
    assert pace.flat_out and pace.hold_after(said(50)) is None and pace.holds == []
    assert pace.label() == "flat out" and pace.status() == "flat out"


def test_pace_changes_recompute_the_hold_under_way() -> None:
    clock = Ticks()
    pace = ReadingPace(120, clock=clock)
    changes: list[str] = []
    pace.subscribe(lambda: changes.append(pace.status()))
    hold = pace.hold_after(said(20))  # 10 s at 120 wpm
    assert hold is not None
    pace.begin(hold)
    clock.now = 4.0
    assert pace.left() == 6.0 and pace.status() == "120 wpm · reading 6s"
    pace.faster()  # 180 wpm: 20 words read in 6.67 s, 4 s of which have passed
    assert pace.wpm == 180 and pace.left() == pytest.approx(20 / 3 - 4)
    pace.toggle_flat_out()
    assert pace.left() == 0.0
    pace.toggle_flat_out()
    assert pace.wpm == 180, "flat out toggles back to the pace before"
    pace.end()
    assert pace.left() == 0.0 and pace.holding is None
    assert changes == ["120 wpm · reading 10s", "180 wpm · reading 3s", "flat out", "180 wpm · reading 3s", "180 wpm"]


def test_keys_step_through_the_paces() -> None:
    pace = ReadingPace(DEFAULT_WPM)
    pace.slower()
    assert pace.wpm == 180
    for _ in range(10):
        pace.slower()
    assert pace.wpm == STEPS[0]
    for _ in range(len(STEPS) - 1):
        pace.faster()
    assert pace.wpm == STEPS[-1]
    pace.faster()
    assert pace.flat_out, "past the fastest step: flat out"
    pace.slower()
    assert pace.wpm == STEPS[-1]
    odd = ReadingPace(200)
    odd.faster()
    assert odd.wpm == 240


def test_parse_pace() -> None:
    assert parse_pace("240") == 240 and parse_pace(" max ") is None and parse_pace("0") is None
    for bad in ("fast", "-5", "1e9", "2.5"):
        with pytest.raises(ConfigError, match="--pace") as caught:
            parse_pace(bad)
        assert "\n" not in str(caught.value)


# -- the scheduler waits between turns ------------------------------------------------------------
def paced(wpm: int | None, reply: str = "one two three four five six", turns: int = 3,
          delay: float = 0.0) -> tuple[Scheduler, ReadingPace, ScriptedEngine]:
    pace = ReadingPace(wpm)
    engine = ScriptedEngine(lambda r: reply, delay=delay)
    return Scheduler(engine, spec(max_turns=turns), PEOPLE, clock=lambda: FIXED, pace=pace), pace, engine


async def test_each_turn_is_held_by_its_words_and_the_pace() -> None:
    scheduler, pace, _ = paced(6_000, turns=3)  # 6 words at 6000 wpm: 0.06 s each
    assert await asyncio.wait_for(scheduler.run(), 10) == "max_turns"
    assert [(h.index, h.words, h.wpm, h.shown) for h in pace.holds] == [(i, 6, 6_000, 0.0) for i in range(3)]
    assert [h.seconds for h in pace.holds] == [pytest.approx(0.06)] * 3
    assert [h.node for h in pace.holds] == [t.node for t in scheduler.turns]
    assert pace.holding is None


async def test_flat_out_is_the_default_and_never_waits() -> None:
    scheduler = Scheduler(ScriptedEngine(lambda r: "a b c"), spec(max_turns=3), PEOPLE)
    assert scheduler.control.reading_pace.flat_out
    await asyncio.wait_for(scheduler.run(), 10)
    assert scheduler.control.reading_pace.holds == []


async def held(scheduler: Scheduler, pace: ReadingPace) -> asyncio.Task[str]:
    """Run until the first turn is on hold."""
    task = asyncio.create_task(scheduler.run())
    await wait_until(lambda: pace.holding is not None, timeout=10)
    return task


async def test_an_interjection_ends_the_hold_and_is_the_next_turn() -> None:
    scheduler, pace, _ = paced(6, turns=2)  # a minute for six words: only the request can end it
    task = await held(scheduler, pace)
    scheduler.interject("What about parking?", speaker="Dana")
    await wait_until(lambda: len(scheduler.turns) >= 2, timeout=5)
    assert (scheduler.turns[1].speaker, scheduler.turns[1].kind) == ("Dana", TurnKind.AUDIENCE)
    await wait_until(lambda: pace.holding is not None and pace.holding.index == 1, timeout=5)
    scheduler.stop()
    assert await asyncio.wait_for(task, 5) == "stopped"
    assert [t.speaker for t in scheduler.turns] == ["Ann", "Dana"]


async def test_a_pause_ends_the_hold_and_pauses() -> None:
    scheduler, pace, _ = paced(6, turns=3)
    events = record(scheduler)
    task = await held(scheduler, pace)
    scheduler.pause()
    await wait_until(lambda: scheduler.status == "paused", timeout=5)
    assert pace.holding is None and len(scheduler.turns) == 1
    names = [type(e).__name__ for e in events]
    assert names[-2:] == ["TurnFinished", "Paused"]
    scheduler.stop()
    assert await asyncio.wait_for(task, 5) == "stopped"
    assert sum(isinstance(e, Paused) for e in events) == 1


async def test_a_skip_ends_the_hold_and_skips_the_next_speaker() -> None:
    scheduler, pace, _ = paced(6, turns=3)
    task = await held(scheduler, pace)
    scheduler.skip()
    await wait_until(lambda: len(scheduler.turns) >= 2, timeout=5)
    assert scheduler.turns[1].speaker == "Cy", "Bob was skipped"
    scheduler.stop()
    await asyncio.wait_for(task, 5)


async def test_going_flat_out_ends_the_hold() -> None:
    scheduler, pace, _ = paced(6, turns=2)
    events = record(scheduler)
    task = await held(scheduler, pace)
    pace.toggle_flat_out()
    assert await asyncio.wait_for(task, 5) == "max_turns"
    assert len(pace.holds) == 1, "flat out: no hold after the second turn"
    assert sum(isinstance(e, TurnFinished) for e in events) == 2
