"""Typed events the scheduler publishes; the store, the TUI, the CLI and tests subscribe."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from townhall.engine.base import EngineInfo
from townhall.errors import TownhallError
from townhall.domain.personas import Persona
from townhall.domain.turns import Turn, TurnKind

log = logging.getLogger(__name__)

SchedulerStatus = Literal["idle", "running", "paused", "finished"]
# The one spelling of a ballot's result and a vote's side: the ballot, the record, the exports and
# the TUI's would-be tally all use these.
Result = Literal["carried", "defeated", "tied"]
Side = Literal["for", "against"]


@dataclass(frozen=True)
class SessionStarted:
    session_id: str
    spec: dict[str, Any]  # the town hall as given (TownHallSpec.model_dump())
    participants: tuple[Persona, ...]  # snapshots, in speaking order
    engine: EngineInfo
    at: float
    resumed: bool = False


@dataclass(frozen=True)
class TurnStarted:
    session_id: str
    index: int
    speaker: str
    kind: TurnKind
    at: float
    phase: str | None = None  # the agenda's phase (opening | questions | closing), else None
    # Its node in the tree of branches (townhall/domain/branches.py), the node before it, its branch:
    # the record keys turns by node, since one index can hold several alternatives.
    node: str = ""
    parent: str | None = None
    branch: int = 1


@dataclass(frozen=True)
class TokenStreamed:
    session_id: str
    index: int
    speaker: str
    text: str


@dataclass(frozen=True)
class TurnFinished:
    """A turn that ended complete, interrupted or degenerate; `turn` holds all of it."""

    session_id: str
    turn: Turn


@dataclass(frozen=True)
class TurnFailed:
    session_id: str
    turn: Turn  # status FAILED, `turn.error` holds the message
    error: str


@dataclass(frozen=True)
class Paused:
    session_id: str
    at: float


@dataclass(frozen=True)
class Resumed:
    session_id: str
    at: float


@dataclass(frozen=True)
class StrategyApplied:
    """A context strategy acted (turns dropped, a summary written) for one agent."""

    session_id: str
    agent: str
    strategy: str
    detail: str
    at: float


@dataclass(frozen=True)
class StanceMeasured:
    """One agent's stance on the motion, read from its own KV state by the stance probe.

    `p_for` is P(for) / (P(for) + P(against)) for the ballot cue's two answers. `turn_index`
    is the last turn the agent's state had taken in; `round` counts completed rounds (1 after
    every participant has spoken once). `method` says how it was read: "logits" (local
    engine), "logprobs" (a server's token probabilities) or "choice" (a one-token constrained
    answer where the server returns no probabilities: p_for is then 0 or 1).
    """

    session_id: str
    agent: str
    round: int
    turn_index: int
    p_for: float
    method: str
    at: float


@dataclass(frozen=True)
class Vote:
    agent: str
    choice: Side
    p_for: float


@dataclass(frozen=True)
class OutcomeDecided:
    """The closing ballot: every participant's vote from its probe, and the moderator's line."""

    session_id: str
    votes: tuple[Vote, ...]
    votes_for: int
    votes_against: int
    result: Result
    announcement: str  # e.g. "The motion carries, 3 to 2."
    at: float


@dataclass(frozen=True)
class MinutesWritten:
    """The minutes of the session (positions, main reasons, the result), as plain text."""

    session_id: str
    text: str
    at: float


@dataclass(frozen=True)
class BranchCreated:
    """A new branch: regenerate or edit (its first turn follows as TurnStarted/TurnFinished) or
    fork (nothing said on it yet). It shares the path up to `fork` with branch `parent`."""

    session_id: str
    branch: int
    parent: int | None
    fork: str | None  # the last shared node; None when it shares nothing
    reason: str  # regenerate | edit | fork
    at: float


@dataclass(frozen=True)
class BranchSwitched:
    """The current path changed: a new branch, or the watcher picked another alternative or
    branch. `turns` is the whole new path; views redraw it from `from_index` on."""

    session_id: str
    branch: int
    turns: tuple[Turn, ...]
    from_index: int
    at: float


@dataclass(frozen=True)
class SessionEnded:
    session_id: str
    reason: str  # max_turns, token_budget, time_budget, closing_phrase, stopped, error
    at: float
    turns: int
    error: str | None = None


Event = Union[
    SessionStarted,
    TurnStarted,
    TokenStreamed,
    TurnFinished,
    TurnFailed,
    Paused,
    Resumed,
    StrategyApplied,
    StanceMeasured,
    OutcomeDecided,
    MinutesWritten,
    BranchCreated,
    BranchSwitched,
    SessionEnded,
]

Subscriber = Callable[[Event], Any]


@dataclass
class EventBus:
    """Fan-out to subscribers, called in order on the scheduler's event loop.

    A display-only subscriber that raises is logged and kept: one broken view must not stop
    the debate or the record. A critical one (the record, whose work must not be lost) that
    raises is the run's failure: every subscriber still gets the event, `failure` holds the
    error, and the scheduler stops before its next turn. Async subscribers are awaited by
    `apublish`.
    """

    _subscribers: list[Subscriber] = field(default_factory=list)
    _critical: list[Subscriber] = field(default_factory=list)
    failure: TownhallError | None = None  # the first critical subscriber's failure

    def subscribe(self, fn: Subscriber, *, critical: bool = False) -> Callable[[], None]:
        self._subscribers.append(fn)
        if critical:
            self._critical.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)
            if fn in self._critical:
                self._critical.remove(fn)

        return unsubscribe

    async def apublish(self, event: Event) -> None:
        for fn in list(self._subscribers):
            try:
                result = fn(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:  # noqa: BLE001 - isolate subscribers from each other
                if fn in self._critical:
                    self._fail(fn, event, error)
                else:
                    log.exception("event subscriber %r failed on %s", fn, type(event).__name__)

    def _fail(self, fn: Subscriber, event: Event, error: Exception) -> None:
        log.info("critical subscriber %r failed on %s: %s", fn, type(event).__name__, error)
        if self.failure is None:
            self.failure = error if isinstance(error, TownhallError) else TownhallError(
                f"{type(error).__name__}: {error}")
