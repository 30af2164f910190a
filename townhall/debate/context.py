"""Context strategies: what to do when an agent's next prompt would not fit its context.

Seed 000 crashed with `cannot bind 1025 to <pos[1-1024]>` and asked for strategy
classes; these are they. A strategy edits one agent's `AgentView` (which turns it
still sees, and a summary of the rest); the scheduler then calls `engine.forget`
so the agent's KV state is rebuilt from the new prompt, and publishes
`StrategyApplied` with the returned detail.

Strategies cut deeper than strictly needed (to about half the free room) so the
rebuilt state is reused for several turns instead of being rebuilt every turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from townhall.errors import ConfigError, ContextOverflowError
from townhall.debate.prompts import AgentView, Line

Measure = Callable[[AgentView], Awaitable[int]]
CountTokens = Callable[[str], Awaitable[int]]
SummarizeFn = Callable[[str | None, Sequence[Line]], Awaitable[str]]


# Engines count a prompt's text; the local engine evaluates a BOS token before it. Without
# this one token of room, a prompt fitted to the last token ran out of context on the
# reply's last token (the 60-turn test at n_ctx 512 found it).
PROMPT_OVERHEAD = 1


@dataclass
class FitJob:
    """One agent's prompt that is too long, and the means to shorten it."""

    agent: str
    view: AgentView
    entries: Sequence[tuple[int, Line]]  # (turn index, line) of the turns the view still shows
    n_ctx: int
    max_tokens: int
    fixed_tokens: int  # header + persona + cue: never dropped
    measure: Measure
    count: CountTokens
    summarize: SummarizeFn | None = None

    @property
    def limit(self) -> int:
        """The most prompt tokens that leave room for the reply (and the BOS, see PROMPT_OVERHEAD)."""
        return self.n_ctx - self.max_tokens - PROMPT_OVERHEAD

    @property
    def target(self) -> int:
        return self.fixed_tokens + max(0, (self.limit - self.fixed_tokens) // 2)

    def too_small(self, needed: int) -> ContextOverflowError:
        return ContextOverflowError(
            f"{self.agent}'s prompt needs {needed} tokens plus {self.max_tokens} for the reply, "
            f"but the context holds {self.n_ctx}; raise --n-ctx or lower max_tokens"
        )

    async def drop_count(self, budget: int) -> int:
        """How many of the oldest entries to drop so the rest fits in `budget` tokens."""
        sizes = [await self.count(f"{line.speaker}: {line.text}\n") for _, line in self.entries]
        total = self.fixed_tokens + sum(sizes)
        if self.view.summary:
            total += await self.count(self.view.summary) + 8
        dropped = 0
        while total > budget and dropped < len(sizes):
            total -= sizes[dropped]
            dropped += 1
        return dropped

    def advance(self, dropped: int) -> None:
        """Make the view start after the first `dropped` entries."""
        if dropped <= 0:
            return
        if dropped >= len(self.entries):
            last_index = self.entries[-1][0] if self.entries else self.view.first - 1
            self.view.first = max(self.view.first, last_index + 1)
        else:
            self.view.first = self.entries[dropped][0]


class ContextStrategy(Protocol):
    name: ClassVar[str]

    async def fit(self, job: FitJob) -> str:
        """Shorten `job.view` until its prompt fits; return what was done, for the event."""


async def _drop_until_fits(job: FitJob, dropped: int) -> int:
    """Drop further entries one at a time while the measured prompt is still too long."""
    job.advance(dropped)
    while (size := await job.measure(job.view)) > job.limit:
        remaining = [e for e in job.entries if e[0] >= job.view.first]
        if not remaining:
            if job.view.summary:
                job.view.summary = None
                continue
            raise job.too_small(size)
        job.view.first = remaining[0][0] + 1
        dropped += 1
    return dropped


class Truncate:
    """Drop the oldest turns, keeping the header and the persona."""

    name: ClassVar[str] = "truncate"

    async def fit(self, job: FitJob) -> str:
        dropped = await _drop_until_fits(job, await job.drop_count(job.target))
        return f"dropped the {dropped} oldest turns from {job.agent}'s prompt"


class Summarize:
    """Replace the oldest turns with a summary the model writes ("memory compression", seed 004)."""

    name: ClassVar[str] = "summarize"

    async def fit(self, job: FitJob) -> str:
        # Leave room for the summary itself inside the target.
        room = max(job.fixed_tokens, job.target - min(96, job.n_ctx // 8))
        dropped = await job.drop_count(room)
        old = [line for _, line in job.entries[:dropped]]
        summary = job.view.summary
        if old and job.summarize is not None:
            written = (await job.summarize(summary, old)).strip()
            if written:
                summary = written
        job.view.summary = summary
        job.view.summary_upto = job.entries[dropped - 1][0] + 1 if dropped else job.view.summary_upto
        extra = await _drop_until_fits(job, dropped) - dropped
        detail = f"summarised the {dropped} oldest turns for {job.agent}"
        if extra:
            detail += f" and dropped {extra} more"
        if job.view.summary:
            detail += f": {job.view.summary}"
        return detail


class Fail:
    """Stop the session with a clear message instead of losing anything."""

    name: ClassVar[str] = "error"

    async def fit(self, job: FitJob) -> str:
        raise ContextOverflowError(
            f"{job.agent}'s next prompt no longer fits the {job.n_ctx}-token context "
            "(context_strategy = 'error'); raise --n-ctx or use --context-strategy truncate or summarize"
        )


STRATEGIES: dict[str, type] = {Truncate.name: Truncate, Summarize.name: Summarize, Fail.name: Fail}


def make_strategy(name: str) -> ContextStrategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ConfigError(f"unknown context strategy '{name}' (choose from {', '.join(STRATEGIES)})") from None
