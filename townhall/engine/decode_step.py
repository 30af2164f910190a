"""One turn's decoding: pick a token from a logits row, apply the turn's rules, show its text.

The sequential path (`engine/sequential.py`) and the batched one (`engine/batch.py`) differ
only in how the next token is evaluated: `llm.eval` on sequence 0, or one `llama_decode`
over every sequence. Everything between two evaluations is `TurnDecoder.step`, and the end
of a turn is `TurnDecoder.finish`, so both paths stop, ban, stream and trim alike.

Why `kept_tokens`: the saved state must end where the shown text ends. Tokens that only
formed a stop string are dropped while the full cache is still live; after a restore under
a sliding window they could no longer be cut back exactly.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from typing import Any

from townhall.engine.base import GenerationRequest, GenerationStats
from townhall.engine.decoding import TurnConstraints
from townhall.engine.sampling import TokenPicker
from townhall.engine.stops import StopMatcher


class TurnDecoder:
    """The decoding state of one request: its picker, constraints, stop matcher and counts."""

    def __init__(
        self,
        request: GenerationRequest,
        *,
        stats: GenerationStats,
        started: float,
        picker: TokenPicker,
        constraints: TurnConstraints | None,
        piece: Callable[[int], bytes],
        is_end: Callable[[int], bool],
        feed: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> None:
        self.request = request
        self.stats = stats
        self.started = started
        self.picker = picker
        self.constraints = constraints
        self._piece = piece
        self._is_end = is_end
        self._feed = feed
        self.cancelled = cancelled
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.matcher = StopMatcher(request.sampling.stop)
        self.first_token_at: float | None = None
        self.picks = 0
        self.emitted = 0  # characters shown to the requester
        self.decoded = 0
        self.generated: list[tuple[int, int]] = []  # (token, decoded characters up to and including it)
        stats.finish_reason = "length"

    @property
    def needs_row(self) -> bool:
        """Whether `step` reads the logits row as numpy (constraints, or the greedy picker)."""
        return self.constraints is not None or self.picker.needs_row

    def step(self, row: Any, index: int | None, held: int, n_ctx: int) -> int | None:
        """One pick from the logits now ready; the token to evaluate next, or None when the
        turn is over (`stats.finish_reason` says why).

        `row` is the logits (may be None unless `needs_row`: the sampler chain reads them by
        `index` itself), `index` their batch position (None: `row` is a checkpoint's, outside
        the context), `held` the tokens the sequence holds now.
        """
        stats = self.stats
        if self.cancelled():
            stats.finish_reason = "cancelled"
            return None
        if held >= n_ctx:
            stats.finish_reason = "context"
            return None
        if self.constraints is not None:
            self.constraints.apply(row)
        token = self.picker.pick(row, index)
        if self.constraints is not None:
            self.constraints.observe(token)
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
            stats.ttft_ms = (self.first_token_at - self.started) * 1000
        if self._is_end(token):
            stats.finish_reason = "stop"
            return None
        stats.generated_tokens += 1
        piece = self._decoder.decode(self._piece(token))
        self.decoded += len(piece)
        self.generated.append((token, self.decoded))
        text = self.matcher.feed(piece)
        if text:
            self.emitted += len(text)
            self._feed(text)
        if self.matcher.stopped:
            stats.finish_reason = "stop"
            return None
        self.picks += 1
        return token if self.picks < self.request.sampling.max_tokens else None

    def finish(self) -> None:
        """Free the picker, show what the stop matcher held back, time the decoding."""
        self.picker.close()
        if not self.matcher.stopped:
            tail = self.matcher.feed(self._decoder.decode(b"", final=True)) + self.matcher.flush()
            if tail:
                self.emitted += len(tail)
                self._feed(tail)
        done = time.perf_counter()
        if self.first_token_at is not None and self.stats.generated_tokens > 1:
            self.stats.decode_tps = (self.stats.generated_tokens - 1) / max(done - self.first_token_at, 1e-9)

    def kept_tokens(self, held: int, prompt_tokens: int) -> int:
        """How many of the `held` tokens to keep in the saved state: the prompt and the
        generated tokens whose text was shown (the rest formed a stop string)."""
        shown = sum(1 for _, upto in self.generated if upto <= self.emitted)
        return min(held, prompt_tokens + shown)
