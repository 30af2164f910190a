"""Running one town hall session: written once for every front end.

`townhall run`, `townhall resume`, `townhall generate` and the TUI all need the same
wiring: build a Scheduler (new, or going on with a stored session), attach the store
they were handed, subscribe their views, run, turn cancellation into a clean end, and
keep the end reason and error. Each front end had its own copy and the copies drifted
(the CLI's resume budgeted the remaining turns, the TUI's a fresh `max_turns`).

The turn budget of a resumed session has one rule, `turns_left`:
- `more_turns=N` (the CLI's `--turns N`): N more turns;
- otherwise what the original `max_turns` left, counting the stored turns the way
  the scheduler counts them (`turns.uses_turn_budget`: skipped turns and audience
  lines are free); with nothing left, a ConfigError asks for `--turns N`.
The scheduler counts `max_turns` over its own run, so a plan carries this run's
budget in `spec.max_turns`; the stored spec keeps the original, and resuming again
without `--turns` gives what is still left of it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from townhall.debate.prompts import AUDIENCE
from townhall.debate.reading_pace import ReadingPace
from townhall.debate.sides import with_sides
from townhall.domain.events import Event, EventBus, OutcomeDecided, SchedulerStatus, SessionEnded, Subscriber
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnStatus, uses_turn_budget
from townhall.engine.base import Engine
from townhall.errors import ConfigError, TownhallError

if TYPE_CHECKING:
    from townhall.domain.branches import TurnTree
    from townhall.store import Store

STOPPED = "stopped"


class NoTurnsLeft(ConfigError):
    """A stored session used up its max_turns: a front end may ask for more (`more_turns`)."""

    def __init__(self, session_id: str, max_turns: int) -> None:
        super().__init__(f"session {session_id} already had its {max_turns} turns; pass --turns N to continue it")
        self.session_id = session_id
        self.max_turns = max_turns


class SessionScheduler(Protocol):
    """The scheduler as front ends drive it (`townhall.debate.scheduler.Scheduler`, or a test's fake).

    The runner itself uses subscribe, run, interrupt and stop; `townhall vote` uses
    hold_vote and minutes; the rest is what a front end steers through
    `session.scheduler` (the TUI's keys).
    """

    session_id: str
    tree: TurnTree  # every branch; `turns` is the current one's path
    participants: list[Persona]  # speaking order, the moderator first
    status: SchedulerStatus

    # Read-only to front ends: the scheduler alone moves the path and the floor.
    @property
    def turns(self) -> list[Turn]: ...
    @property
    def current_speaker(self) -> str | None: ...
    @property
    def next_speaker(self) -> str | None: ...
    @property
    def minutes(self) -> str | None:
        """Written after the closing ballot."""

    def agent_key(self, name: str) -> str: ...
    def subscribe(self, fn: Subscriber, *, critical: bool = False) -> Callable[[], None]: ...
    async def run(self) -> str: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step(self) -> None: ...
    def skip(self) -> None: ...
    def interrupt(self) -> None: ...
    def interject(self, text: str, speaker: str = ..., source: str | None = ...) -> None: ...
    def stop(self) -> None: ...
    def call_vote(self) -> None:
        """End after the current turn with the closing ballot and the minutes."""
    # Branch ops (townhall/debate/scheduler.py): queued, applied at the next turn boundary.
    def regenerate(self, index: int | None = None) -> None: ...
    def edit(self, index: int, text: str) -> None: ...
    def fork(self, index: int) -> None: ...
    def alternative(self, index: int, step: int) -> None: ...
    def switch_branch(self, number: int) -> None: ...
    async def hold_vote(self) -> OutcomeDecided | None:
        """The closing ballot on a stored session, without a debate first (`townhall vote`)."""


# Builds the scheduler of a run: (engine, spec, personas, *, bus, session_id, history, clock[, tree]).
# `Scheduler` itself by default; a test hands in a fake.
SchedulerFactory = Callable[..., SessionScheduler]

# A branch key's operation (regenerate, edit, fork, alternative) as a front end queues it
# on a scheduler; one queued before `run()` is applied first.
BranchKeyOp = Callable[[SessionScheduler], None]


class Feed(Protocol):
    """A way in for interjections besides the front end's own (`interject_file.InterjectionFile`):
    checked when the session is built, run beside the debate, cancelled when it ends."""

    def check(self) -> None:
        """Raise ConfigError when it cannot feed (a bad path): before anything runs."""

    async def run(self, interject: Callable[[str, str], None]) -> None:
        """Hand each line to `interject(text, source)` until cancelled."""


class Recording(Protocol):
    """A store as the runner uses it: it records every event of the scheduler it is attached to."""

    def attach(self, source: SessionScheduler) -> Callable[[], None]: ...


@dataclass(frozen=True)
class SessionPlan:
    """What to run: a town hall, and for a resumed session its id and the turns already said."""

    spec: TownHallSpec
    personas: Sequence[Persona]
    session_id: str | None = None
    history: Sequence[Turn] = ()
    tree: TurnTree | None = None  # a resumed session's every branch; `history` is its current path


@dataclass(frozen=True)
class SessionResult:
    """How a session ended: the reason the scheduler gave, its error, and whether Ctrl+C stopped it."""

    session_id: str
    reason: str
    error: str | None
    turns: list[Turn]
    stopped_by_user: bool = False
    published_end: bool = False  # the scheduler published SessionEnded, so its views saw how it ended
    # The record failed during the run (a critical subscriber raised): the run stopped before its
    # next turn; what the record could not take is still held by the store (`Store.rescue`).
    record_error: TownhallError | None = None

    @property
    def unpublished_error(self) -> str | None:
        """The error line of a run that failed before it published SessionEnded: no view has shown it yet."""
        return self.error if self.reason == "error" and not self.published_end else None


def turns_left(max_turns: int | None, history: Iterable[Turn], more_turns: int | None = None) -> int | None:
    """The turn budget of a resumed run (see the module docstring); None means no limit."""
    if more_turns is not None:
        return more_turns
    if max_turns is None:
        return None
    return max_turns - sum(1 for turn in history if uses_turn_budget(turn))


def _stored_plan(store: Store, session_id: str) -> SessionPlan:
    """A stored session's spec as recorded, its personas, its current path and its tree."""
    record = store.get_session(session_id)
    spec, personas, history = store.load_for_resume(record.id)
    tree = resumable_tree(store.tree(record.id), history, record.id)
    return SessionPlan(spec, list(personas), record.id, tuple(history), tree)


def plan_resume(store: Store, session_id: str, *, more_turns: int | None = None) -> SessionPlan:
    """A stored session as the runner needs it: its spec, its personas as recorded, its turns.

    `spec.max_turns` becomes this run's budget (`turns_left`). Raises before any
    model loads: an unknown id, a session still running elsewhere, no turns left.
    """
    if more_turns is not None and more_turns < 1:
        raise ConfigError("--turns: a resumed session needs at least one more turn")
    plan = _stored_plan(store, session_id)
    left = turns_left(plan.spec.max_turns, plan.history, more_turns)
    if left is not None and left <= 0:
        raise NoTurnsLeft(plan.session_id or session_id, plan.spec.max_turns or 0)
    return replace(plan, spec=plan.spec.model_copy(update={"max_turns": left}))


def plan_branch_op(store: Store, session_id: str) -> SessionPlan:
    """A stored session resumed only to apply branch ops (regenerate, edit, fork, a flip)
    after its debate has ended: no turns beyond the op's own, so the run applies the ops
    and ends; the scheduler holds a new ballot only when an op said a new turn."""
    plan = _stored_plan(store, session_id)
    # 0 is below what a town-hall file may ask for (max_turns >= 1): set here on purpose.
    return replace(plan, spec=plan.spec.model_copy(update={"max_turns": 0}))


def resumable_tree(tree: TurnTree, history: Sequence[Turn], session_id: str) -> TurnTree:
    """`tree` with its current head on the last settled turn of `history`.

    `load_for_resume` leaves out a turn still STREAMING (its process died mid-turn); it can
    only be the end of its path, so the head steps back over it and the next turn becomes
    its sibling, the half-said one kept in the tree as it was.
    """
    branch = tree.branch()
    while branch.head is not None and tree.nodes[branch.head].status == TurnStatus.STREAMING:
        branch.head = tree.nodes[branch.head].parent
    if [t.node for t in tree.path()] != [t.node for t in history]:
        at = next((t.index for t in tree.path() if t.status == TurnStatus.STREAMING), 0)
        raise ConfigError(f"session {session_id}: turn {at} of its current branch was never settled; "
                          f"go on from before it with `townhall fork {session_id} --at {max(at - 1, 0)}`")
    return tree


def _tree_kwargs(tree: TurnTree | None, pace: ReadingPace | None = None) -> dict[str, Any]:
    """`tree=` and `pace=` for a scheduler factory, only when given (fakes in tests predate them)."""
    given = {"tree": tree, "pace": pace}
    return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True)
class VoteResult:
    """What `hold_vote` produced: the ballot (None when no probe could be read) and the minutes."""

    session_id: str
    outcome: OutcomeDecided | None
    minutes: str | None


async def hold_vote(
    engine: Engine,
    store: Store,
    session_id: str,
    *,
    views: Iterable[Subscriber] = (),
    scheduler_factory: SchedulerFactory | None = None,
) -> VoteResult:
    """The closing ballot on a stored session (`townhall vote ID`): each participant's view is
    rebuilt from the record, probed, and the outcome, the moderator's announcement (a new turn)
    and the minutes are recorded with the session. The engine is started, never closed here."""
    spec, personas, history = store.load_for_resume(session_id)  # fails before any model loads
    record_id = store.resolve_id(session_id)
    tree = resumable_tree(store.tree(record_id), history, record_id)
    await engine.start()
    if engine.info.stance_probe is None:
        raise ConfigError(f"the {engine.info.backend} engine has no stance probe, so it cannot hold a vote")
    factory = scheduler_factory or _default_scheduler
    scheduler = factory(engine, spec, list(personas), bus=EventBus(), session_id=record_id, history=tuple(history),
                        **_tree_kwargs(tree))
    detach = [store.attach(scheduler)] + [scheduler.subscribe(view) for view in views]
    try:
        outcome = await scheduler.hold_vote()
    finally:
        for undo in detach:
            undo()
    return VoteResult(record_id, outcome, scheduler.minutes)


def _default_scheduler(engine: Engine, spec: TownHallSpec, personas: list[Persona], **kwargs: Any) -> SessionScheduler:
    from townhall.debate.scheduler import Scheduler

    return Scheduler(engine, spec, personas, **kwargs)


class CtrlC:
    """Ctrl+C for a run in a terminal: the first press calls `first`, the next `second`.

    With `second=None` the handler goes at the first press, so the next one raises
    KeyboardInterrupt as usual. Where no handler can be installed (not the main
    thread, Windows) it does nothing: the run still ends through its own means.
    """

    def __init__(
        self,
        first: Callable[[], None],
        second: Callable[[], None] | None = None,
        signals: Sequence[signal.Signals] = (signal.SIGINT,),
    ) -> None:
        self.first = first
        self.second = second
        self.signals = tuple(signals)
        self.presses = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[signal.Signals] = []

    def _pressed(self) -> None:
        self.presses += 1
        if self.presses == 1:
            if self.second is None:
                self._remove()
            self.first()
        elif self.second is not None:
            self.second()

    def __enter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        for signum in self.signals:
            try:
                self._loop.add_signal_handler(signum, self._pressed)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self._installed.append(signum)
        return self

    def _remove(self) -> None:
        assert self._loop is not None
        for signum in self._installed:
            self._loop.remove_signal_handler(signum)
        self._installed.clear()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._remove()


class Session:
    """One run of one town hall: the scheduler, with the store attached and the views subscribed.

    Everything comes in: the engine (started by the scheduler if it is not yet, never
    closed here), the plan, the store (optional: a run without a record), the views
    (any event subscriber), the clock, the scheduler factory (a test's fake) and the
    reading pace (None: flat out; a front end keeps the object to change it while it runs).
    Steering goes straight to `session.scheduler` (pause, step, skip, interject...).
    Three ways to run it: `run()` for a command (cancelling it cancels the run),
    `run_shielded()` for a Textual worker (only `end()` stops it), `start()` for a task.
    The result says whether the views saw the end (`SessionResult.unpublished_error`).
    """

    def __init__(
        self,
        engine: Engine,
        plan: SessionPlan,
        *,
        store: Recording | None = None,
        views: Iterable[Subscriber] = (),
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
        scheduler_factory: SchedulerFactory | None = None,
        feeds: Iterable[Feed] = (),
        pace: ReadingPace | None = None,
    ) -> None:
        factory = scheduler_factory or _default_scheduler
        self.feeds = list(feeds)
        for feed in self.feeds:
            feed.check()
        if plan.session_id is None and not plan.history:  # a new session: sides for everyone (debate.sides)
            plan = replace(plan, spec=with_sides(plan.spec, plan.personas))
        self.plan = plan
        self.bus = bus if bus is not None else EventBus()
        self.scheduler: SessionScheduler = factory(
            engine,
            plan.spec,
            list(plan.personas),
            bus=self.bus,
            session_id=plan.session_id,
            history=tuple(plan.history),
            clock=clock,
            **_tree_kwargs(plan.tree, pace),
        )
        self._detach: list[Callable[[], None]] = []
        if store is not None:
            self._detach.append(store.attach(self.scheduler))
        self._ended: SessionEnded | None = None
        self._detach.append(self.scheduler.subscribe(self._watch))
        for view in views:
            self.subscribe(view)
        self._task: asyncio.Task[SessionResult] | None = None
        self._ctrl_c: CtrlC | None = None
        self.result: SessionResult | None = None

    @property
    def session_id(self) -> str:
        return self.scheduler.session_id

    def subscribe(self, view: Subscriber) -> Callable[[], None]:
        """Add a view; it is unsubscribed when the session ends (or by the function returned)."""
        unsubscribe = self.scheduler.subscribe(view)
        self._detach.append(unsubscribe)
        return unsubscribe

    @property
    def ended(self) -> SessionEnded | None:
        """The SessionEnded event views were sent, once the scheduler published it."""
        return self._ended

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _watch(self, event: Event) -> None:
        if isinstance(event, SessionEnded):
            self._ended = event

    # -- running -------------------------------------------------------------------
    def start(self) -> asyncio.Task[SessionResult]:
        """Run as a task on the running loop (a TUI's way); `run()` and `end()` share it."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def run(self, *, ctrl_c: bool = False) -> SessionResult:
        """Run to the end. With `ctrl_c` (a terminal): the first Ctrl+C cuts the turn
        being generated (its words are kept) and stops; a second cancels at once.

        Cancelling the caller cancels the run too (the scheduler still publishes
        SessionEnded, so the record is settled) and re-raises.
        """
        task = self.start()
        if ctrl_c:

            def cancel() -> None:
                task.cancel()

            self._ctrl_c = CtrlC(self.request_stop, cancel)
            with self._ctrl_c:
                return await self._await(task)
        return await self._await(task)

    async def run_shielded(self) -> SessionResult:
        """Run to the end, even if the caller is cancelled (a Textual worker is, when its
        screen goes): only `end()` or `request_stop()` ends the run, so the record settles."""
        return await asyncio.shield(self.start())

    @staticmethod
    async def _await(task: asyncio.Task[SessionResult]) -> SessionResult:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait({task})
            raise

    def request_stop(self) -> None:
        """End soon and cleanly: the turn being generated is cut (kept, interrupted), none follows."""
        self.scheduler.interrupt()
        self.scheduler.stop()

    async def end(self, timeout_s: float = 10.0) -> SessionResult | None:
        """Stop and wait for the record to settle; cancel if it takes longer than `timeout_s`.

        For a front end that is leaving (the TUI quitting or switching debates).
        Returns None when the session was never started.
        """
        task = self._task
        if task is None:
            self.close()
            return None
        if not task.done():
            self.request_stop()
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                task.cancel()
                await asyncio.wait({task})
        return task.result()

    def _from_the_floor(self, text: str, source: str) -> None:
        self.scheduler.interject(text, AUDIENCE, source)

    async def _run(self) -> SessionResult:
        error: str | None = None
        feeding = [asyncio.ensure_future(feed.run(self._from_the_floor)) for feed in self.feeds]
        try:
            reason = await self.scheduler.run()
        except asyncio.CancelledError:
            reason = STOPPED
        except Exception as failure:  # noqa: BLE001 - a scheduler bug ends the session, not the front end
            reason, error = "error", f"{type(failure).__name__}: {failure}"
        finally:
            for task in feeding:
                task.cancel()
            if feeding:
                await asyncio.wait(feeding)
            self.close()
        if self._ended is not None:
            error = error or self._ended.error
        pressed = self._ctrl_c is not None and self._ctrl_c.presses > 0
        self.result = SessionResult(self.session_id, reason, error, list(self.scheduler.turns), pressed,
                                    published_end=self._ended is not None, record_error=self.bus.failure)
        return self.result

    def close(self) -> None:
        """Detach the store and the views (done when the run ends; safe to repeat)."""
        while self._detach:
            self._detach.pop()()


async def run_session(
    engine: Engine,
    plan: SessionPlan,
    *,
    store: Recording | None = None,
    views: Iterable[Subscriber] = (),
    ctrl_c: bool = False,
    close_engine: bool = False,
    clock: Callable[[], float] = time.time,
    feeds: Iterable[Feed] = (),
    pace: ReadingPace | None = None,
) -> SessionResult:
    """Build a Session, run it to the end and (for a command that owns the engine) close the engine."""
    try:
        session = Session(engine, plan, store=store, views=views, clock=clock, feeds=feeds, pace=pace)
        return await session.run(ctrl_c=ctrl_c)
    finally:
        if close_engine:
            await engine.aclose()
