"""Key-to-screen latency while a turn streams: the number behind "generation never blocks the UI".

The app runs headless (Textual's Pilot) on whatever engine it was given, so `townhall
bench` can measure it on the real model. During streaming the pause key is posted to
the app repeatedly (pause, resume, pause...) the way a terminal driver posts a parsed
key, and each sample is the time from posting it until the header has been rendered
showing the new state: through the same event loop the tokens arrive on, including
the screen's refresh (Textual draws at most 60 frames a second).

All the measuring happens here, from outside the app: the driver wraps the header's
`render` on that one instance to timestamp each frame, and counts token batches with
`run_test(message_hook=...)`. No production module imports this one.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from textual import events
from textual.widget import Widget

from townhall.tui.app import TownhallApp
from townhall.debate.session import SessionPlan
from townhall.tui.messages import TokensArrived
from townhall.domain.turns import TurnStatus

SIZE = (120, 40)


@dataclass(frozen=True)
class LatencyReport:
    samples_ms: tuple[float, ...]
    median_ms: float
    p95_ms: float
    max_ms: float
    token_batches: int  # token batches that arrived while measuring: proof it was streaming
    device: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"key-to-screen during generation: median {self.median_ms:.1f} ms, "
            f"p95 {self.p95_ms:.1f} ms, max {self.max_ms:.1f} ms over {len(self.samples_ms)} presses "
            f"({self.device})"
        )


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not reach the expected state in time")
        await asyncio.sleep(0.001)


def _streaming(app: TownhallApp) -> bool:
    views = app.debate_screen.transcript.views
    return bool(views) and any(v.status is TurnStatus.STREAMING and v.text for v in views.values())


class FrameClock:
    """Timestamps every render of one widget, with the state it showed: set on the instance only."""

    def __init__(self, widget: Widget, state: Any) -> None:
        self.at = 0.0
        self.state = ""
        render = widget.render

        def timed() -> Any:
            self.state = state()
            self.at = time.perf_counter()
            return render()

        widget.render = timed  # type: ignore[method-assign]


async def measure_key_latency(app: TownhallApp, presses: int = 10, timeout: float = 120.0) -> LatencyReport:
    """Run `app` headless, press the pause key `presses` times mid-turn, and time each redraw.

    The app should run a debate long enough to still be streaming (plenty of turns,
    enough max_tokens); it is quit at the end.
    """
    samples: list[float] = []
    batches = 0

    def count(message: Any) -> None:
        nonlocal batches
        if isinstance(message, TokensArrived):
            batches += 1

    async with app.run_test(size=SIZE, message_hook=count) as pilot:
        screen = app.debate_screen
        header = screen.header
        frames = FrameClock(header, lambda: header.state)
        attempts = 0
        while len(samples) < presses and attempts < presses * 4:
            attempts += 1
            await _until(lambda: _streaming(app) and screen.state == "debating", timeout)
            start = time.perf_counter()
            # What a terminal driver does with a parsed key: post it to the app. (Pilot's
            # press() also waits for the whole screen to settle, which is not latency.)
            app.post_message(events.Key("p", "p"))
            # Pausing shows "pausing" at once, or "paused" if the turn ended meanwhile:
            # either way the key has reached the screen.
            await _until(lambda start=start: frames.at >= start and frames.state in ("pausing", "paused"), timeout)
            samples.append((frames.at - start) * 1000)
            await pilot.press("p")  # resume, so the next press lands mid-turn too
            await _until(lambda: screen.state == "debating", timeout)
        engine = app.engines.engine
        device = engine.info.device if engine is not None else "unknown"
        await pilot.press("q")
    if not samples:
        raise RuntimeError("no latency sample could be taken (the debate never streamed?)")
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return LatencyReport(
        samples_ms=tuple(round(s, 2) for s in samples),
        median_ms=statistics.median(samples),
        p95_ms=p95,
        max_ms=max(samples),
        token_batches=batches,
        device=device,
    )


async def measure_engine_latency(engine: Any, presses: int = 10, townhall_file: Any = None) -> LatencyReport:
    """For `townhall bench`: the default town hall (or `townhall_file`) on `engine`, no store.

    The caller owns the engine (starts nothing else, closes nothing).
    """
    from townhall.domain.personas import PersonaRegistry
    from townhall.domain.spec import default_spec_path, load_spec
    from townhall.tui.config import TuiConfig

    spec = load_spec(townhall_file or default_spec_path())
    spec = spec.model_copy(update={"max_turns": None})
    registry = PersonaRegistry.default()
    names = ([spec.moderator] if spec.moderator else []) + list(spec.participants)
    app = TownhallApp(
        SessionPlan(spec, registry.resolve(list(dict.fromkeys(names)))),
        engine=engine,
        config=TuiConfig(),
        save_settings=False,
    )
    return await measure_key_latency(app, presses=presses)
