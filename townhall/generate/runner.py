"""The generate loop: one town hall per topic on one shared engine, judged, stored and appended.

Everything comes in from outside (the engine, the store, the personas, the output
file, a reporter and a clock), so a test can run the same loop on a scripted
engine and a temp database. Each conversation is a normal session in the store;
only the ones that pass `cleaning.judge` reach the output, rendered by the same
export functions `townhall export` uses.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from townhall.engine.base import Engine
from townhall.errors import NotFoundError, TownhallError
from townhall.events import Event, TurnFinished
from townhall.export import FORMATS
from townhall.generate.cleaning import judge
from townhall.generate.config import GenerateConfig, conversation_seed
from townhall.generate.output import OutputFile
from townhall.personas import Persona
from townhall.session import Session, SessionPlan
from townhall.store import Store

STOPPED = "stopped"
EMPTY = "empty"


class Reporter:
    """What the runner tells a progress view; the base class ignores it all (quiet runs, tests)."""

    def begin(self, *, total: int | None, skipped: int, topics: int, out: Path) -> None: ...

    def turn(self, tokens: int) -> None: ...

    def conversation(self, outcome: Outcome, summary: Summary) -> None: ...

    def stopping(self) -> None: ...

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
        self.reporter = reporter or Reporter()
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.max_failures = max_failures
        self.summary = Summary(out=output.path, format=output.format)
        self._stopping = False
        self._session: Session | None = None

    # -- control --------------------------------------------------------------------
    def pending(self) -> list[str]:
        """Topics not yet written to this output by this config, in order."""
        done = self.output.done_topics()
        return [t for t in self.topics if t.casefold() not in done]

    def stop(self) -> None:
        """Stop now: the turn being generated is cut, that conversation is not written."""
        if self._stopping:
            return
        self._stopping = True
        self.summary.stopped = True
        self.reporter.stopping()
        if self._session is not None:
            self._session.request_stop()

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

    # -- running ----------------------------------------------------------------------
    async def run(self) -> Summary:
        started = self.clock()
        pending = self.pending()
        self.summary.skipped = len(self.topics) - len(pending)
        self.reporter.begin(
            total=self._total(len(pending)), skipped=self.summary.skipped, topics=len(self.topics), out=self.output.path
        )
        failures = 0
        try:
            if pending or self.forever:
                await self.engine.start()
            for topic in self._plan():
                if self._stopping or (self.count is not None and self.summary.written >= self.count):
                    break
                outcome, error = await self._conversation(topic)
                if outcome.reason == STOPPED:
                    break
                failures = failures + 1 if error else 0
                self.reporter.conversation(outcome, self.summary)
                if failures >= self.max_failures:
                    self.summary.aborted = f"{failures} conversations in a row failed; the last: {error}"
                    break
        except TownhallError as failure:
            self.summary.aborted = str(failure)
        finally:
            self._forget()
            self.summary.elapsed_s = self.clock() - started
            self.reporter.end(self.summary)
        return self.summary

    def _forget(self) -> None:
        """Drop every participant's KV state, so nothing one topic said leaks into the next."""
        for persona in self.personas:
            self.engine.forget(persona.name)

    async def _conversation(self, topic: str) -> tuple[Outcome, str | None]:
        attempt = self.output.attempts(topic)
        base = self.config.seed
        seed = conversation_seed(base, topic, attempt) if base is not None else self.rng.randrange(2**31 - 1)
        spec = self.config.spec_for(topic, seed)
        self._forget()

        def watch(event: Event) -> None:
            if isinstance(event, TurnFinished) and event.turn.stats is not None:
                self.reporter.turn(event.turn.stats.generated_tokens)

        session = Session(self.engine, SessionPlan(spec, self.personas), store=self.store, views=[watch])
        self._session = session
        began = self.clock()
        try:
            if self._stopping:
                session.request_stop()
            result = await session.run()
        finally:
            self._session = None
        seconds = self.clock() - began
        reason, turns, session_id = result.reason, result.turns, result.session_id
        tokens = sum(t.stats.generated_tokens for t in turns if t.stats is not None)
        self.summary.tokens += tokens
        self.summary.generation_s += seconds
        error = (result.error or "unknown error") if reason == "error" else None

        def outcome(written: bool, why: str | None, detail: str = "", lines: int = 0) -> Outcome:
            return Outcome(topic, attempt, session_id, seed, written, why, detail, lines, len(turns), tokens, seconds)

        if self._stopping and reason == STOPPED:
            return outcome(False, STOPPED, "interrupted; kept in the store, not written"), None
        verdict = judge(turns, exclude=self.config.exclude, min_turns=self.config.min_turns, end_reason=reason)
        if verdict.keep:
            text = FORMATS[self.output.format](self.store, session_id)
            if self.output.format == "txt" and text:
                text += "\n\n"  # two blank lines between conversations, one between turns
            if text.strip():
                try:
                    entry = self.output.append(
                        text, topic=topic, attempt=attempt, session_id=session_id, seed=seed
                    )
                except OSError as failure:
                    raise TownhallError(
                        f"--out {self.output.path}: cannot write: {failure.strerror or failure}"
                    ) from None
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
