"""What the app runs: a town hall (spec + personas, or a stored session to resume).

Kept apart from the app so dialogs and the CLI can build one without importing the
whole UI, and so the scheduler contract the app relies on is written down in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from townhall.engine.base import Engine
from townhall.engine.factory import EngineConfig
from townhall.events import Event, SchedulerStatus
from townhall.personas import Persona
from townhall.spec import TownHallSpec
from townhall.turns import Turn

if TYPE_CHECKING:
    from townhall.store import Store


class SchedulerLike(Protocol):
    """The part of townhall.scheduler.Scheduler's contract the app drives."""

    session_id: str
    participants: list[Persona]
    turns: list[Turn]
    status: SchedulerStatus
    current_speaker: str | None
    next_speaker: str | None

    def subscribe(self, fn: Callable[[Event], Any]) -> Callable[[], None]: ...
    async def run(self) -> str: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step(self) -> None: ...
    def skip(self) -> None: ...
    def interrupt(self) -> None: ...
    def interject(self, text: str, speaker: str = "Audience") -> None: ...
    def stop(self) -> None: ...


SchedulerFactory = Callable[..., SchedulerLike]
EngineFactory = Callable[[EngineConfig], Engine]


def default_scheduler_factory(engine: Engine, spec: TownHallSpec, personas: list[Persona], **kwargs: Any) -> SchedulerLike:
    from townhall.scheduler import Scheduler

    return Scheduler(engine, spec, personas, **kwargs)


@dataclass
class Debate:
    """What to run next: a town hall, and for a resumed session its id and past turns."""

    spec: TownHallSpec
    personas: list[Persona]
    session_id: str | None = None
    history: Sequence[Turn] = ()
    engine_config: EngineConfig | None = None


def export_to_file(store: Store, session_id: str, fmt: str, folder: Path) -> Path:
    """Write one session through the store's exporter; the file name is the session id."""
    from townhall.export import export_session

    text = export_session(store, session_id, fmt)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"md": "md", "json": "json", "jsonl": "jsonl", "sharegpt": "json", "html": "html", "txt": "txt"}[fmt]
    stem = f"townhall-{session_id}" + (".sharegpt" if fmt == "sharegpt" else "")
    path = folder / f"{stem}.{suffix}"
    path.write_text(text, encoding="utf-8")
    return path
