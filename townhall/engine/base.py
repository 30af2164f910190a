"""The engine interface every backend implements, and the values that cross it.

The engine knows nothing about personas or debates: it serves requests keyed by an
opaque `agent_id`, keeps one KV state per id, and streams text back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

FinishReason = Literal["stop", "length", "context", "cancelled", "error"]
BackendKind = Literal["local", "openai", "scripted"]


class SamplingOverrides(BaseModel):
    """Sampling settings as written in a persona or town-hall file: every field optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0.0, le=5.0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0, le=5.0)
    seed: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: tuple[str, ...] | None = None
    no_repeat_ngram_size: int | None = Field(default=None, ge=0)
    min_tokens: int | None = Field(default=None, ge=0)
    dry_multiplier: float | None = Field(default=None, ge=0.0)
    dry_base: float | None = Field(default=None, ge=1.0)
    dry_allowed_length: int | None = Field(default=None, ge=1)
    dry_penalty_last_n: int | None = Field(default=None, ge=-1)


class SamplingParams(BaseModel):
    """Fully resolved sampling settings for one request.

    Defaults follow seed 002 (top_k 40, top_p 0.95, repeat_penalty 1.1) with a cooler
    temperature, because a 270M base model at 1.2 drifts off topic within a sentence.

    Anti-echo decoding, all off by default (the quality benchmark picks the defaults):
    - `no_repeat_ngram_size` N: a token that would complete a token N-gram already present
      in the request's `banned_texts` or earlier in this turn is never picked (0 = off).
      Newline and end-of-turn tokens are never banned, so a turn can always end.
    - `min_tokens` N: until N tokens are generated, newline and end-of-generation tokens
      cannot be picked, so a turn cannot end on its first words (0 = off). Stop strings
      without a newline can still end it.
    - `dry_*`: llama.cpp's DRY sampler (on when `dry_multiplier` > 0). It penalises tokens
      that extend a sequence already seen in the prompt or the turn beyond
      `dry_allowed_length` tokens, by multiplier × base^(length − allowed); it looks back
      over `dry_penalty_last_n` tokens (-1 = the whole context).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    top_k: int = Field(default=40, ge=0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    min_p: float = Field(default=0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(default=1.1, gt=0.0, le=5.0)
    seed: int | None = Field(default=None, ge=0)
    max_tokens: int = Field(default=160, ge=1)
    stop: tuple[str, ...] = ()
    no_repeat_ngram_size: int = Field(default=0, ge=0)
    min_tokens: int = Field(default=0, ge=0)
    dry_multiplier: float = Field(default=0.0, ge=0.0)
    dry_base: float = Field(default=1.75, ge=1.0)
    dry_allowed_length: int = Field(default=2, ge=1)
    dry_penalty_last_n: int = Field(default=-1, ge=-1)

    def merged(self, *overrides: SamplingOverrides | Mapping[str, Any] | None) -> SamplingParams:
        """Return a copy with each override's set (non-None) fields applied, later ones winning."""
        values = self.model_dump()
        for override in overrides:
            if override is None:
                continue
            items = override.model_dump() if isinstance(override, BaseModel) else dict(override)
            values.update({k: v for k, v in items.items() if v is not None})
        return SamplingParams.model_validate(values)


@dataclass(frozen=True)
class GenerationRequest:
    """One turn's worth of work for the engine.

    `prompt` is the agent's whole prompt; it grows only at the end between an agent's
    requests, which is what lets the engine reuse that agent's KV state. `messages`
    carries the same prompt as chat messages for chat-completion backends.
    `agent_id=None` asks for a stateless one-off (a summary, a speaker choice).

    `banned_texts` are what was already said (the scheduler passes the debate's turns,
    one text each); with `sampling.no_repeat_ngram_size` N the reply never repeats a token
    N-gram of any of them. Each text is tokenized as it reads after a `Name:` tag (one
    leading space) and n-grams never span two texts. Pass the same growing tuple turn
    after turn: the local engine tokenizes only the texts it has not seen.
    `allowed_texts` hold the n-grams a debate must be free to repeat (the motion, the
    names, "for the motion"): once someone said "I am for the motion", a plain ban drove
    the next speakers to "I'm with the third".
    """

    agent_id: str | None
    prompt: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    messages: tuple[Mapping[str, str], ...] | None = None
    grammar: str | None = None
    banned_texts: tuple[str, ...] = ()
    allowed_texts: tuple[str, ...] = ()


@dataclass
class GenerationStats:
    """What one request cost; every engine fills every field it can measure.

    The one definition of the per-request figures: the store's columns (`STAT_FIELDS`),
    the JSON export and the views all take their names from here.
    """

    # Read by pydantic where an export embeds these stats: a misspelt field is an error.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefill_tokens: int = 0
    generated_tokens: int = 0
    ttft_ms: float = 0.0
    decode_tps: float = 0.0
    restore_ms: float = 0.0
    save_ms: float = 0.0
    total_ms: float = 0.0
    finish_reason: FinishReason = "stop"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


STAT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GenerationStats))


ProbeMethod = Literal["logits", "logprobs", "choice", "scripted"]


@dataclass(frozen=True)
class ProbeResult:
    """What a probe read: the probability of each choice's first token after the prompt.

    `probabilities[i]` is the model's P(first token of `choices[i]`) over the whole
    vocabulary ("logits", "logprobs"; a choice missing from a server's top list counts 0),
    or 1.0 for the one choice a constrained one-token answer picked ("choice").
    `evaluated_tokens` is what the probe cost the model: the prompt tokens its state did
    not already hold.
    """

    choices: tuple[str, ...]
    probabilities: tuple[float, ...]
    method: ProbeMethod
    prompt_tokens: int = 0
    evaluated_tokens: int = 0
    total_ms: float = 0.0

    def share(self, index: int = 0) -> float:
        """Choice `index`'s share of the choices' total probability (0.5 when all are 0)."""
        total = sum(self.probabilities)
        return self.probabilities[index] / total if total > 0 else 1.0 / len(self.probabilities)


@dataclass(frozen=True)
class DecodingSupport:
    """Which anti-echo settings a backend really applies, so a caller can fall back.

    Where `ngram_ban` is False the scheduler should resample turns that echo instead.
    """

    ngram_ban: bool = False  # sampling.no_repeat_ngram_size with request.banned_texts
    min_tokens: bool = False
    dry: bool = False


@dataclass(frozen=True)
class EngineInfo:
    """The truth about what is serving requests, for headers and `townhall doctor`."""

    backend: BackendKind
    model_name: str
    n_ctx: int
    device: str  # e.g. "CPU · 2 threads" or "GPU · 18/18 layers offloaded"
    model_path: str | None = None
    chat_template: str | None = None
    eos_markers: tuple[str, ...] = ()
    decoding: DecodingSupport = DecodingSupport()
    # How `probe` reads token probabilities: "logits" (in-process), "logprobs" (the server
    # returns them), "choice" (it does not: a one-token constrained answer) or "scripted"
    # (a test's script); None = no probe.
    stance_probe: ProbeMethod | None = None


class Generation:
    """A streaming handle: iterate for text pieces; `stats` is set once iteration ends.

    Backends push pieces with `feed` and end the stream with `finish`, both on the event
    loop (from another thread, through `loop.call_soon_threadsafe`). `cancel()` asks the backend to stop; the text
    produced so far stays in `text` and `stats.finish_reason` becomes "cancelled".
    """

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.text = ""
        self.stats: GenerationStats | None = None
        self.error: BaseException | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._cancelled = False
        self._done = False

    # -- consumer side -------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._done and self._queue.empty():
            raise StopAsyncIteration
        piece = await self._queue.get()
        if piece is None:
            self._done = True
            if self.error is not None:
                raise self.error
            raise StopAsyncIteration
        return piece

    async def result(self) -> str:
        """Drain the stream and return the whole text."""
        async for _ in self:
            pass
        return self.text

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # -- producer side (engines only; call on the event loop) ----------------
    def feed(self, piece: str) -> None:
        """Append a piece of text to the stream (empty pieces are dropped)."""
        if piece:
            self.text += piece
            self._queue.put_nowait(piece)

    def finish(self, stats: GenerationStats | None, error: BaseException | None = None) -> None:
        """End the stream: `stats` when it ran to an end, `error` when it failed (raised to
        the consumer after the pieces already fed)."""
        self.stats = stats
        self.error = error
        self._queue.put_nowait(None)


@runtime_checkable
class Engine(Protocol):
    """One model serving many agents. Implementations: local (llama.cpp), openai, scripted."""

    @property
    def info(self) -> EngineInfo: ...

    async def start(self) -> None:
        """Load the model or reach the server; safe to call twice."""

    def generate(self, request: GenerationRequest) -> Generation:
        """Queue a request; the returned handle streams its text."""

    async def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model, for context budgeting."""

    def state_tokens(self, agent_id: str) -> int:
        """Tokens currently held in this agent's saved KV state (0 if none)."""

    def forget(self, agent_id: str) -> None:
        """Drop an agent's state, so its next request is evaluated from scratch."""

    async def probe(self, agent_id: str | None, prompt: str, choices: Sequence[str]) -> ProbeResult:
        """Read how likely each of `choices` is to come next after `prompt`, generating nothing.

        `prompt` extends what the agent's state holds (its prompt so far, then a cue); the
        agent's saved state is left exactly as it was, so its next request is what it would
        have been without the probe. Runs between requests, never inside one.
        """

    async def aclose(self) -> None:
        """Stop the worker and free the model."""
