"""A scripted engine: deterministic replies, real streaming semantics.

For tests and UI work where the order of events matters more than the words. It
honours stop strings, max_tokens (one word = one token), cancellation and per-agent
state accounting the way the real engines do, so the scheduler cannot tell it apart.

Anti-echo settings (`no_repeat_ngram_size`, `min_tokens`, `dry_*`, `banned_texts`) are
recorded in `requests` for tests to inspect, and by default not applied: a script is the
text a test wants to see. With `word_bans=True` the n-gram ban acts on words, as far as a
fixed script allows: a word that would complete a word N-gram (case-folded) of
`banned_texts` or of the reply so far is dropped. `info.decoding` says what is applied.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Sequence

from townhall.engine.base import (
    DecodingSupport,
    EngineInfo,
    Generation,
    GenerationRequest,
    GenerationStats,
    ProbeResult,
)
from townhall.engine.stops import StopMatcher

Script = Callable[[GenerationRequest], str]
# A scripted probe: (agent_id, prompt, choices) -> one probability per choice.
ProbeScript = Callable[[str | None, str, Sequence[str]], Sequence[float]]


def even_odds(agent_id: str | None, prompt: str, choices: Sequence[str]) -> Sequence[float]:
    """A probe script with no preference at all."""
    return [1.0 / len(choices)] * len(choices)


class ScriptedEngine:
    def __init__(
        self,
        script: Script | Iterable[str] | None = None,
        *,
        delay: float = 0.0,
        n_ctx: int = 4096,
        chat_template: str | None = None,
        word_bans: bool = False,
        probe_script: ProbeScript | None = None,
    ) -> None:
        """Without a `probe_script` the engine has no stance probe (`info.stance_probe` None), so
        a scheduler holds no ballot: scripts written before the probe keep their exact turns."""
        if script is None:
            counter = itertools.count(1)
            script = lambda request: f"Point number {next(counter)} is well taken. "  # noqa: E731
        elif not callable(script):
            replies = itertools.cycle(list(script))
            script = lambda request: next(replies)  # noqa: E731
        self._script: Script = script
        self.word_bans = word_bans
        self.delay = delay
        self.requests: list[GenerationRequest] = []
        self.probe_script = probe_script
        self.probes: list[tuple[str | None, str, tuple[str, ...]]] = []  # every probe asked, in order
        self._states: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._info = EngineInfo(
            backend="scripted",
            model_name="scripted",
            n_ctx=n_ctx,
            device="CPU · scripted",
            chat_template=chat_template,
            decoding=DecodingSupport(ngram_ban=word_bans),
            stance_probe="scripted" if probe_script is not None else None,
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def start(self) -> None:
        return None

    async def count_tokens(self, text: str) -> int:
        return len(text.split())

    def state_tokens(self, agent_id: str) -> int:
        return self._states.get(agent_id, 0)

    def forget(self, agent_id: str) -> None:
        self._states.pop(agent_id, None)

    async def aclose(self) -> None:
        return None

    async def probe(self, agent_id: str | None, prompt: str, choices: Sequence[str]) -> ProbeResult:
        """The probe script's answer; like the real engines it waits for the request before it."""
        script = self.probe_script or even_odds
        async with self._lock:
            self.probes.append((agent_id, prompt, tuple(choices)))
            probabilities = tuple(float(p) for p in script(agent_id, prompt, choices))
        held = self._states.get(agent_id or "", 0)
        tokens = len(prompt.split())
        return ProbeResult(tuple(choices), probabilities, "scripted", prompt_tokens=tokens,
                           evaluated_tokens=max(0, tokens - held))

    def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        generation = Generation(request)
        asyncio.get_running_loop().create_task(self._run(generation))
        return generation

    async def _run(self, generation: Generation) -> None:
        request = generation.request
        async with self._lock:  # one request at a time, like the real request queue
            start = time.perf_counter()
            prompt_tokens = len(request.prompt.split())
            reused = min(self._states.get(request.agent_id or "", 0), prompt_tokens)
            stats = GenerationStats(
                prompt_tokens=prompt_tokens,
                reused_tokens=reused,
                prefill_tokens=prompt_tokens - reused,
            )
            try:
                reply = self._script(request)
            except Exception as exc:  # noqa: BLE001 - a script may simulate a backend fault
                generation.finish(stats, exc)
                return
            matcher = StopMatcher(request.sampling.stop)
            words = _without_banned_words(reply, request) if self.word_bans else reply.split(" ")
            first = True
            for i, word in enumerate(words):
                if generation.cancelled:
                    stats.finish_reason = "cancelled"
                    break
                if stats.generated_tokens >= request.sampling.max_tokens:
                    stats.finish_reason = "length"
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                else:
                    await asyncio.sleep(0)
                piece = word + (" " if i < len(words) - 1 else "")
                stats.generated_tokens += 1
                if first:
                    stats.ttft_ms = (time.perf_counter() - start) * 1000
                    first = False
                generation.feed(matcher.feed(piece))
                if matcher.stopped:
                    break
            generation.feed(matcher.flush())
            elapsed = time.perf_counter() - start
            stats.total_ms = elapsed * 1000
            stats.decode_tps = stats.generated_tokens / elapsed if elapsed > 0 else 0.0
            if request.agent_id:
                self._states[request.agent_id] = prompt_tokens + stats.generated_tokens
            generation.finish(stats)


def _without_banned_words(reply: str, request: GenerationRequest) -> list[str]:
    """The reply's words after the request's word-level n-gram ban."""
    sampling = request.sampling
    words = reply.split(" ")
    n = sampling.no_repeat_ngram_size
    if n:
        seen: set[tuple[str, ...]] = set()
        for text in request.banned_texts:
            said = text.casefold().split()
            seen.update(tuple(said[i : i + n]) for i in range(len(said) - n + 1))
        for text in request.allowed_texts:
            said = text.casefold().split()
            seen.difference_update(tuple(said[i : i + n]) for i in range(len(said) - n + 1))
        kept: list[str] = []
        folded: list[str] = []
        for word in words:
            gram = tuple((folded + [word.casefold().strip()])[-n:])
            if word.strip() and len(gram) == n and gram in seen:
                continue
            kept.append(word)
            if word.strip():
                folded.append(word.casefold().strip())
                if len(folded) >= n:
                    seen.add(tuple(folded[-n:]))
        words = kept
    return words
