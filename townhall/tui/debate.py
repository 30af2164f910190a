"""What the app runs: a town hall (spec + personas, or a stored session to resume).

Kept apart from the app so dialogs and the CLI can build one without importing the
whole UI, and so the scheduler contract the TUI relies on is written down in one place.
`open_session` is the TUI's only way to a scheduler: building it, attaching the store,
subscribing the screen and capturing how the run ended all happen here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from townhall.engine.base import Engine
from townhall.engine.factory import EngineConfig
from townhall.errors import TownhallError
from townhall.events import Event, EventBus
from townhall.personas import Persona
from townhall.spec import TownHallSpec
from townhall.turns import Turn


class SchedulerLike(Protocol):
    """The part of townhall.scheduler.Scheduler's contract the app drives."""

    session_id: str
    turns: list[Turn]
    status: str
    current_speaker: str | None
    next_speaker: str | None
    participants: Sequence[Persona]

    def subscribe(self, fn: Callable[[Event], Any]) -> Callable[[], None]: ...
    async def run(self) -> str: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step(self) -> None: ...
    def skip(self) -> None: ...
    def interrupt(self) -> None: ...
    def interject(self, text: str, speaker: str = "Audience") -> None: ...
    def stop(self) -> None: ...


class RecordStore(Protocol):
    """The part of townhall.store.Store a running debate needs: recording its events."""

    def attach(self, source: SchedulerLike) -> Callable[[], None]: ...


SchedulerFactory = Callable[..., SchedulerLike]
EngineFactory = Callable[[EngineConfig], Engine]


def default_scheduler_factory(engine: Engine, spec: TownHallSpec, personas: list[Persona], **kwargs: Any) -> SchedulerLike:
    from townhall.scheduler import Scheduler

    return Scheduler(engine, spec, personas, **kwargs)


STOP_TIMEOUT_S = 10.0


@dataclass
class Debate:
    """What to run next: a town hall, and for a resumed session its id and past turns."""

    spec: TownHallSpec
    personas: list[Persona]
    session_id: str | None = None
    history: Sequence[Turn] = ()
    engine_config: EngineConfig | None = None


def export_to_file(store: Any, session_id: str, fmt: str, folder: Path) -> Path:
    """Write one session through the store's exporter; the file name is the session id."""
    from townhall.export import export_session

    text = export_session(store, session_id, fmt)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"md": "md", "json": "json", "jsonl": "jsonl", "sharegpt": "json", "html": "html", "txt": "txt"}[fmt]
    stem = f"townhall-{session_id}" + (".sharegpt" if fmt == "sharegpt" else "")
    path = folder / f"{stem}.{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


class DebateSession:
    """One running town hall: its scheduler, the run task and how it ended."""

    def __init__(self, scheduler: SchedulerLike, detach: list[Callable[[], None]]) -> None:
        self.scheduler = scheduler
        self.session_id = scheduler.session_id
        self.end_reason: str | None = None
        self.error: str | None = None  # one line, when the run raised
        self._detach = detach
        self._task: asyncio.Task[str] | None = None

    async def run(self) -> str:
        """Run to the end and return the end reason ("error" if the scheduler raised).

        Shielded: cancelling the caller (a Textual worker) does not cancel the run;
        `stop` ends it properly so the store settles the last turn.
        """
        self._task = asyncio.ensure_future(self.scheduler.run())
        try:
            self.end_reason = await asyncio.shield(self._task)
        except asyncio.CancelledError:
            raise
        except TownhallError as exc:
            self.end_reason, self.error = "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - the app stays usable after a scheduler bug
            self.end_reason, self.error = "error", f"{type(exc).__name__}: {exc}"
        return self.end_reason

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End the run (if any) and stop listening; safe to call twice."""
        task = self._task
        if task is not None and not task.done():
            self.scheduler.stop()
            self.scheduler.interrupt()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except (TimeoutError, Exception):  # noqa: BLE001 - we are leaving anyway
                task.cancel()
        for detach in self._detach:
            detach()
        self._detach.clear()


def open_session(
    engine: Engine,
    debate: Debate,
    *,
    store: RecordStore | None,
    listener: Callable[[Event], Any],
    clock: Callable[[], float],
    scheduler_factory: SchedulerFactory = default_scheduler_factory,
) -> DebateSession:
    """Build the scheduler for `debate`, attach the store, subscribe `listener`.

    The one place the TUI builds a scheduler (a new town hall or a resumed one), so a
    shared session runner can replace it without touching the screen.
    """
    scheduler = scheduler_factory(
        engine,
        debate.spec,
        list(debate.personas),
        bus=EventBus(),
        session_id=debate.session_id,
        history=tuple(debate.history),
        clock=clock,
    )
    detach: list[Callable[[], None]] = []
    if store is not None:
        detach.append(store.attach(scheduler))
    detach.append(scheduler.subscribe(listener))
    return DebateSession(scheduler, detach)
