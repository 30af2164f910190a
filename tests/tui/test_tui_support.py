"""Helpers shared by the TUI tests: real personas, a real store, deterministic engines.

Named test_tui_* so it sits with the files the TUI work owns; it holds no tests itself
except a check that the deterministic engine really is deterministic.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from townhall.engine.base import Generation, GenerationRequest
from townhall.engine.scripted import ScriptedEngine
from townhall.domain.personas import Persona, PersonaRegistry
from townhall.domain.spec import TownHallSpec
from townhall.debate.reading_pace import ReadingPace
from townhall.tui.app import TownhallApp
from townhall.tui.config import TuiConfig
from townhall.debate.session import SessionPlan

SIZE = (120, 40)
REPLIES = [
    "The rail yard has been empty for **twenty years**. A market brings people back.",
    "Skate parks are loud, and nobody asked the folks on Elm Street what they think.",
    "Friday nights are dead downtown; give the kids somewhere to *be*.",
    "Who pays for the upkeep? I want numbers before I want ramps.",
]


def personas(names: tuple[str, ...] = ("Stacy", "Walt", "Priya")) -> list[Persona]:
    return PersonaRegistry.default().resolve(list(names))


def spec(names: tuple[str, ...] = ("Stacy", "Walt", "Priya"), turns: int | None = 3, **extra: Any) -> TownHallSpec:
    return TownHallSpec(
        motion="The old rail yard should become a skate park.",
        participants=list(names),
        policy="round_robin",
        max_turns=turns,
        closing_phrase=None,
        **extra,
    )


class SteadyEngine(ScriptedEngine):
    """A scripted engine whose measured stats are fixed, so snapshots never drift.

    ScriptedEngine times itself with perf_counter; the numbers are overwritten right
    after it finishes, before the scheduler (the consumer) can read them.
    """

    async def _run(self, generation: Generation) -> None:
        await super()._run(generation)
        if generation.stats is not None:
            generation.stats.total_ms = 250.0 + 10 * generation.stats.generated_tokens
            generation.stats.decode_tps = 40.0
            generation.stats.ttft_ms = 50.0


class GatedEngine(ScriptedEngine):
    """A scripted engine that starts a turn only when the test grants one.

    The test, not the machine's speed, decides how much text exists at each step, so a
    test about scrolling holds on a loaded CPU too.
    """

    def __init__(self, replies: list[str] | Callable[[GenerationRequest], str], delay: float = 0.0) -> None:
        super().__init__(replies, delay=delay)
        self._granted: asyncio.Semaphore | None = None
        self._pending_grants = 0

    def grant(self, turns: int = 1) -> None:
        if self._granted is None:
            self._pending_grants += turns
            return
        for _ in range(turns):
            self._granted.release()

    async def _run(self, generation: Generation) -> None:
        if self._granted is None:
            self._granted = asyncio.Semaphore(self._pending_grants)
        await self._granted.acquire()
        await super()._run(generation)


def counter_clock(start: float = 1_767_225_600.0, step: float = 0.5) -> Callable[[], float]:
    """A clock that advances by `step` on every call: fixed times for fixed snapshots."""
    ticks = itertools.count()
    return lambda: start + step * next(ticks)


def make_app(
    engine: ScriptedEngine | None = None,
    *,
    store: Any = None,
    turns: int | None = 3,
    session_id: str | None = "tui-test",
    clock: Callable[[], float] | None = None,
    config: TuiConfig | None = None,
    names: tuple[str, ...] = ("Stacy", "Walt", "Priya"),
    exports_dir: Path | None = None,
    save_settings: bool = False,
    pace: ReadingPace | None = None,
) -> TownhallApp:
    engine = engine or ScriptedEngine(REPLIES, delay=0.002)
    return TownhallApp(
        SessionPlan(spec(names, turns), personas(names), session_id=session_id),
        engine=engine,
        store=store,
        config=config,
        available_personas=PersonaRegistry.default().all(),
        clock=clock or counter_clock(),
        save_settings=save_settings,
        exports_dir=exports_dir,
        pace=pace,
    )


def screen_text(app: TownhallApp) -> str:
    """What the terminal shows, as plain text lines."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def test_counter_clock_is_deterministic() -> None:
    a, b = counter_clock(), counter_clock()
    assert [a() for _ in range(3)] == [b() for _ in range(3)] == [1_767_225_600.0, 1_767_225_600.5, 1_767_225_601.0]
