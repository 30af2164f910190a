"""What the sequential and the batched path share of one loaded llama.cpp model.

`LlamaCore` is handed to both servers (`engine/sequential.py`, `engine/batch.py`) so that
neither needs the engine that built it: the model and its context, the agents' saved states
(`engine/states.py`), tokens to text, the prompt-size rule, and a `TurnDecoder` for each
request (`engine/decode_step.py`). All of it runs on the engine's one llama thread.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from townhall.engine.base import GenerationRequest, GenerationStats
from townhall.engine.decode_step import TurnDecoder
from townhall.engine.sampling import TokenPicker, TurnConstraintSource, logits_row
from townhall.engine.states import AgentStates
from townhall.errors import ContextOverflowError


class LlamaCore:
    """One loaded model as both serving paths use it; see the module docstring."""

    def __init__(self, llm: Any, states: AgentStates, *, n_ctx: int, n_batch: int, fast_greedy: bool) -> None:
        import llama_cpp

        self.llm = llm
        self.states = states
        self.n_ctx = n_ctx  # tokens one sequence may hold
        self.n_batch = n_batch
        self.fast_greedy = fast_greedy
        self.n_vocab = llm.n_vocab()
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.constraints = TurnConstraintSource(llm, lambda text: self.tokenize(text, add_bos=False), self.piece)

    @property
    def ctx(self) -> Any:
        return self.llm.ctx

    @property
    def memory(self) -> Any:
        import llama_cpp

        return llama_cpp.llama_get_memory(self.llm.ctx)

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def piece(self, token: int, special: bool = False) -> bytes:
        """A token's bytes (a piece of a UTF-8 character, possibly)."""
        import llama_cpp

        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def is_end(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def row(self, index: int) -> Any:
        """The logits of batch position `index` (-1: the last evaluated), a view into llama.cpp."""
        return logits_row(self.llm.ctx, index, self.n_vocab)

    def prompt_of(self, request: GenerationRequest, stats: GenerationStats) -> list[int]:
        """The request's prompt as tokens; refused when it leaves no room to generate."""
        prompt = self.tokenize(request.prompt)
        stats.prompt_tokens = len(prompt)
        if len(prompt) >= self.n_ctx:
            raise ContextOverflowError(
                f"prompt of {len(prompt)} tokens does not fit the {self.n_ctx}-token context (raise --n-ctx "
                "or use a context strategy)"
            )
        return prompt

    def picker(self, request: GenerationRequest, prompt: list[int]) -> TokenPicker:
        return TokenPicker(self.llm, request, prompt, self.n_ctx, fast_greedy=self.fast_greedy)

    def decoder(
        self,
        request: GenerationRequest,
        prompt: list[int],
        *,
        stats: GenerationStats,
        started: float,
        picker: TokenPicker,
        feed: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> TurnDecoder:
        """A request's decoding state, with its constraints built for `prompt`. On failure the
        picker is the caller's to close."""
        return TurnDecoder(request, stats=stats, started=started, picker=picker,
                           constraints=self.constraints.for_turn(request, prompt), piece=self.piece,
                           is_end=self.is_end, feed=feed, cancelled=cancelled)

    def clear(self, seq: int) -> None:
        """Drop every cell of sequence `seq`."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def cut(self, seq: int, keep: int) -> None:
        """Drop sequence `seq`'s cells from position `keep` on."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.memory, seq, keep, -1)
