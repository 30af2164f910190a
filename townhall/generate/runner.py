"""The generate loop: town halls on one shared engine, N at a time, judged, stored and appended.

Everything comes in from outside (the engine, the store, the personas, the output
file, a reporter and a clock), so a test can run the same loop on a scripted
engine and a temp database. Each conversation is a normal session in the store;
only the ones that pass `cleaning.judge` reach the output (`chats.render`).

With `parallel` N, N conversations are in flight at once (the local engine steps
them in one batch, a server gets N streams). Each runs in a slot whose number
prefixes its agents' engine ids (`Scheduler.agent_prefix`), so two conversations'
"Teacher" never share a KV state. Conversations start in topic order and are
committed (written or dropped, with their ledger entry and report line) in that same
order, whatever order they finish in: the output, the ledger and the attempt numbers
are those of a one-at-a-time run. With `--count`, no more are in flight than could
still be needed, so none is generated only to be thrown away.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from townhall.engine.base import Engine
from townhall.errors import NotFoundError, RecordError, TownhallError
from townhall.domain.events import Event, TurnFinished
from townhall.generate import chats
from townhall.generate.cleaning import judge
from townhall.generate.config import GenerateConfig, conversation_seed
from townhall.generate.output import OutputFile
from townhall.domain.personas import Persona
from townhall.debate.scheduler import Scheduler
from townhall.debate.session import Session, SessionPlan, SessionResult
from townhall.domain.spec import TownHallSpec
from townhall.store import Store

STOPPED = "stopped"  # the session's own end reason when a stop cut it (townhall.debate.session.STOPPED)
EMPTY = "empty"


class Reporter:
    """What the runner tells a progress view; the base class ignores it all (quiet runs, tests)."""

    def begin(self, *, total: int | None, skipped: int, topics: int, out: Path, parallel: int = 1) -> None: ...

    def turn(self, tokens: int) -> None: ...

    def conversation(self, outcome: Outcome, summary: Summary) -> None: ...

    def stopping(self, in_flight: int = 1) -> None: ...

    def end(self, summary: Summary) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What became of one conversation."""

    topic: str
    attempt: int
    session_id: str
    seed: int | None
    written: bool
    reason: str | None  # a drop reason, "stopped", or None when written
    detail: str
    lines: int
    turns: int
    tokens: int
    seconds: float


@dataclass
class Summary:
    """The run in numbers, for the progress view and the closing report."""

    out: Path
    format: str
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # topics already written by an earlier run
    tokens: int = 0
    generation_s: float = 0.0
    elapsed_s: float = 0.0
    stopped: bool = False
    aborted: str | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.generation_s if self.generation_s > 0 else 0.0

    @property
    def done(self) -> int:
        return self.written + sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "format": self.format,
            "written": self.written,
            "dropped": dict(self.dropped),
            "skipped": self.skipped,
            "tokens": self.tokens,
            "tokens_per_s": round(self.tokens_per_s, 2),
            "elapsed_s": round(self.elapsed_s, 2),
            "stopped": self.stopped,
            "aborted": self.aborted,
        }


@dataclass
class _Conversation:
    """One conversation from dispatch to commit: its place in the plan, its slot, its result."""

    index: int
    topic: str
    attempt: int
    seed: int | None
    spec: TownHallSpec
    slot: int
    session: Session | None = None
    result: SessionResult | None = None
    seconds: float = 0.0


def agent_prefix(slot: int, parallel: int) -> str:
    """Engine ids of a slot's agents: the bare names when one conversation runs at a time."""
    return "" if parallel <= 1 else f"{slot}/"


class Runner:
    """Runs the topics of one config into one output file. `stop()` ends it cleanly, from any callback."""

    def __init__(
        self,
        config: GenerateConfig,
        topics: Sequence[str],
        engine: Engine,
        store: Store,
        personas: Sequence[Persona] | Mapping[str, Persona],
        output: OutputFile,
        *,
        count: int | None = None,
        forever: bool = False,
        parallel: int = 1,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        max_failures: int = 3,
    ) -> None:
        self.config = config
        self.topics = list(topics)
        self.engine = engine
        self.store = store
        self.personas = list(personas.values()) if isinstance(personas, Mapping) else list(personas)
        self.output = output
        self.count = count
        self.forever = forever
        self.parallel = max(1, parallel)
        self.reporter = reporter or Reporter()
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.max_failures = max_failures
        self.summary = Summary(out=output.path, format=output.format)
        self._stopping = False
        self._running: dict[int, _Conversation] = {}  # dispatched, not yet finished
        self._finished: dict[int, _Conversation] = {}  # finished, waiting for the ones before them
        self._free_slots = list(range(self.parallel))
        self._busy_since: float | None = None

    # -- control --------------------------------------------------------------------
    def pending(self) -> list[str]:
        """Topics not yet written to this output by this config, in order."""
        done = self.output.done_topics()
        return [t for t in self.topics if t.casefold() not in done]

    def stop(self) -> None:
        """Stop now: the turns being generated are cut, those conversations are not written;
        every conversation that already finished is still written, in order."""
        if self._stopping:
            return
        self._stopping = True
        self.summary.stopped = True
        self.reporter.stopping(len(self._running))
        self._halt()

    def _halt(self) -> None:
        for conversation in self._running.values():
            if conversation.session is not None:
                conversation.session.request_stop()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _plan(self) -> Iterator[str]:
        if self.forever:
            while True:
                yield from self.topics
        else:
            yield from self.pending()

    def _total(self, pending: int) -> int | None:
        if self.forever:
            return self.count
        return min(pending, self.count) if self.count is not None else pending

    def _may_start(self) -> bool:
        """A free slot, not stopping, and (with --count) still short of the count even if every
        conversation already under way is written."""
        if self._stopping or self.summary.aborted or not self._free_slots:
            return False
        under_way = len(self._running) + len(self._finished)
        return self.count is None or self.summary.written + under_way < self.count

    # -- running ----------------------------------------------------------------------
    async def run(self) -> Summary:
        started = self.clock()
        pending = self.pending()
        self.summary.skipped = len(self.topics) - len(pending)
        self.reporter.begin(
            total=self._total(len(pending)), skipped=self.summary.skipped, topics=len(self.topics),
            out=self.output.path,
            parallel=self.parallel,
        )
        tasks: dict[asyncio.Task[None], _Conversation] = {}
        try:
            if pending or self.forever:
                await self.engine.start()
            await self._pool(tasks)
        except RecordError as failure:  # the output or its ledger: what is finished is in the store
            self.summary.aborted = f"{failure}; every finished conversation is kept in {self.store.path}"
        except TownhallError as failure:
            self.summary.aborted = str(failure)
        finally:
            if tasks:  # an abort or a cancelled run: settle every session's record first
                self._halt()
                await asyncio.wait(set(tasks), timeout=30.0)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            self._forget_all()
            self._idle()
            self.summary.elapsed_s = self.clock() - started
            self.reporter.end(self.summary)
        return self.summary

    async def _pool(self, tasks: dict[asyncio.Task[None], _Conversation]) -> None:
        """Keep up to `parallel` conversations running; commit finished ones in plan order."""
        plan = self._plan()
        attempts_under_way: Counter[str] = Counter()
        next_index = next_commit = failures = 0
        while True:
            while self._may_start():
                topic = next(plan, None)
                if topic is None:
                    break
                key = topic.casefold()
                attempt = self.output.attempts(topic) + attempts_under_way[key]
                attempts_under_way[key] += 1
                conversation = self._dispatch(next_index, topic, attempt)
                tasks[asyncio.ensure_future(self._converse(conversation))] = conversation
                next_index += 1
            if not tasks:
                return
            done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                conversation = tasks.pop(task)
                task.result()  # a bug in _converse surfaces here, not silently
                self._finished[conversation.index] = conversation
            while next_commit in self._finished:
                conversation = self._finished.pop(next_commit)
                next_commit += 1
                attempts_under_way[conversation.topic.casefold()] -= 1
                outcome, error = self._commit(conversation)
                if outcome.reason == STOPPED:
                    continue
                self.reporter.conversation(outcome, self.summary)
                if self.summary.aborted:
                    continue
                failures = failures + 1 if error else 0
                if failures >= self.max_failures:
                    self.summary.aborted = f"{failures} conversations in a row failed; the last: {error}"
                    self._halt()

    def _dispatch(self, index: int, topic: str, attempt: int) -> _Conversation:
        base = self.config.seed
        seed = conversation_seed(base, topic, attempt) if base is not None else self.rng.randrange(2**31 - 1)
        slot = self._free_slots.pop(0)
        conversation = _Conversation(index, topic, attempt, seed, self.config.spec_for(topic, seed), slot)
        self._running[index] = conversation
        return conversation

    def _keys(self, slot: int) -> list[str]:
        prefix = agent_prefix(slot, self.parallel)
        return [f"{prefix}{persona.name}" for persona in self.personas]

    def _forget(self, slot: int) -> None:
        """Drop a slot's KV states, so nothing one topic said leaks into the next."""
        for key in self._keys(slot):
            self.engine.forget(key)

    def _forget_all(self) -> None:
        for slot in range(self.parallel):
            self._forget(slot)

    def _busy(self) -> None:
        if self._busy_since is None:
            self._busy_since = self.clock()

    def _idle(self) -> None:
        """Generation time is wall time with any conversation running, not the sum of their times."""
        if self._busy_since is not None and not self._running:
            self.summary.generation_s += self.clock() - self._busy_since
            self._busy_since = None

    async def _converse(self, conversation: _Conversation) -> None:
        prefix = agent_prefix(conversation.slot, self.parallel)

        def watch(event: Event) -> None:
            if isinstance(event, TurnFinished) and event.turn.stats is not None:
                self.reporter.turn(event.turn.stats.generated_tokens)

        self._forget(conversation.slot)
        session = Session(self.engine, SessionPlan(conversation.spec, self.personas), store=self.store,
                          views=[watch], scheduler_factory=partial(Scheduler, agent_prefix=prefix, topic_last=True))
        conversation.session = session
        self._busy()
        began = self.clock()
        try:
            if self._stopping or self.summary.aborted:
                session.request_stop()
            conversation.result = await session.run()
        except asyncio.CancelledError:
            conversation.result = session.result  # set once the scheduler settled, else None
        finally:
            conversation.seconds = self.clock() - began
            conversation.session = None
            del self._running[conversation.index]
            self._forget(conversation.slot)
            self._free_slots.append(conversation.slot)
            self._free_slots.sort()
            self._idle()

    def _commit(self, conversation: _Conversation) -> tuple[Outcome, str | None]:
        """Write or drop one finished conversation: one append to the output, one ledger line."""
        topic, attempt, seed, spec = conversation.topic, conversation.attempt, conversation.seed, conversation.spec
        result = conversation.result
        reason = result.reason if result is not None else STOPPED
        turns = result.turns if result is not None else []
        session_id = result.session_id if result is not None else ""
        tokens = sum(t.stats.generated_tokens for t in turns if t.stats is not None)
        self.summary.tokens += tokens
        error = ((result.error if result is not None else None) or "unknown error") if reason == "error" else None

        def outcome(written: bool, why: str | None, detail: str = "", lines: int = 0) -> Outcome:
            return Outcome(topic, attempt, session_id, seed, written, why, detail, lines, len(turns), tokens,
                           conversation.seconds)

        if reason == STOPPED and (self._stopping or self.summary.aborted or result is None):
            return outcome(False, STOPPED, "interrupted; kept in the store, not written"), None
        verdict = judge(turns, exclude=self.config.exclude, min_turns=self.config.min_turns, end_reason=reason)
        if verdict.keep:
            text = chats.render(self.store, session_id, self.output.format, self.output.shape,
                                self.config.system_for(topic))
            if self.output.format == "txt" and text:
                text += "\n\n"  # two blank lines between conversations, one between turns
            if text.strip():
                # A write that fails raises RecordError: the run stops, every conversation stays in the store.
                entry = self.output.append(text, topic=topic, attempt=attempt, session_id=session_id, seed=seed)
                self.summary.written += 1
                return outcome(True, None, "", entry.lines), error
            verdict_reason, detail = EMPTY, "the export had nothing to write"
        else:
            verdict_reason, detail = verdict.reason or "dropped", verdict.detail
        self.output.drop(topic=topic, attempt=attempt, reason=verdict_reason, session_id=session_id, seed=seed)
        self.summary.dropped[verdict_reason] += 1
        self._mark_dropped(session_id, spec.title or topic, verdict_reason)
        return outcome(False, verdict_reason, detail), error

    def _mark_dropped(self, session_id: str, title: str, reason: str) -> None:
        """Say in the record why a stored conversation is not in the output."""
        try:
            self.store.rename(session_id, f"{title} [dropped: {reason}]")
        except NotFoundError:
            pass
