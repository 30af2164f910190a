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
from typing import TYPE_CHECKING, Any, Protocol

from townhall.engine.base import Engine
from townhall.engine.factory import EngineConfig
from townhall.debate.session import SessionScheduler
from townhall.domain.events import Event
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn

if TYPE_CHECKING:
    from townhall.domain.branches import TurnTree
    from townhall.debate.session import Session
    from townhall.store import Store


# The scheduler as the TUI drives it: the session runner's contract, written once there.
SchedulerLike = SessionScheduler


class RecordStore(Protocol):
    """The part of townhall.store.Store a running debate needs: recording its events."""

    def attach(self, source: SchedulerLike) -> Callable[[], None]: ...


# A branch key's operation (regenerate, edit, fork, alternative), kept so it can be queued on
# a resumed scheduler too: the scheduler applies ops queued before `run()` first.
BranchOp = Callable[[SchedulerLike], None]


SchedulerFactory = Callable[..., SchedulerLike]
EngineFactory = Callable[[EngineConfig], Engine]


def default_scheduler_factory(engine: Engine, spec: TownHallSpec, personas: list[Persona], **kwargs: Any) -> SchedulerLike:
    from townhall.debate.scheduler import Scheduler

    return Scheduler(engine, spec, personas, **kwargs)


STOP_TIMEOUT_S = 10.0


@dataclass
class Debate:
    """What to run next: a town hall, and for a resumed session its id, past turns and tree.

    `then` is a branch key pressed after the debate had ended: queued on the resumed
    scheduler before it runs, which applies it first.
    """

    spec: TownHallSpec
    personas: list[Persona]
    session_id: str | None = None
    history: Sequence[Turn] = ()
    engine_config: EngineConfig | None = None
    tree: TurnTree | None = None
    then: BranchOp | None = None


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


class DebateSession:
    """One running town hall, run by the shared session runner (`townhall.debate.session.Session`).

    The runner builds the scheduler, attaches the store and subscribes the screen, as it
    does for `townhall run`, `resume` and `generate`; this wrapper only adds what a
    Textual worker needs: a run that the worker's cancellation does not cut short.
    """

    def __init__(self, session: Session) -> None:
        self.runner = session
        self.scheduler: SchedulerLike = session.scheduler
        self.session_id = session.session_id
        self.end_reason: str | None = None
        self.error: str | None = None  # one line, when the run ended on an error

    async def run(self) -> str:
        """Run to the end and return the end reason ("error" with `error` set on a fault).

        Shielded: cancelling the caller (a Textual worker) does not cancel the run;
        `stop` ends it properly so the store settles the last turn.
        """
        result = await asyncio.shield(self.runner.start())
        self.end_reason = result.reason
        # An error the scheduler published (SessionEnded) has reached the screen already.
        if result.reason == "error" and self.runner.ended is None:
            self.error = result.error
        return result.reason

    @property
    def running(self) -> bool:
        return self.runner.running

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End the run (if any) and stop listening; safe to call twice."""
        await self.runner.end(timeout)


def open_session(
    engine: Engine,
    debate: Debate,
    *,
    store: RecordStore | None,
    listener: Callable[[Event], Any],
    clock: Callable[[], float],
    scheduler_factory: SchedulerFactory = default_scheduler_factory,
) -> DebateSession:
    """The TUI's only way to a scheduler: the shared session runner, with the screen as its view."""
    from townhall.debate.session import Session, SessionPlan

    plan = SessionPlan(debate.spec, list(debate.personas), debate.session_id, tuple(debate.history), debate.tree)
    session = Session(
        engine, plan, store=store, views=[listener], clock=clock,
        scheduler_factory=scheduler_factory,
    )
    return DebateSession(session)
