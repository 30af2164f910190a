"""How the local engine picks each token: llama.cpp's sampler chain, or the numpy greedy
picker where that gives the same answer faster, behind the turn's logits steps.

Before each pick the request's logits steps (`engine/decoding.py`: n-gram bans against
`banned_texts`, `min_tokens`) write -inf into the logits row, so llama.cpp's sampler chain
and the numpy greedy picker both honour them. The sequential and the batched path both pick
through `TokenPicker` and take their steps from `TurnConstraintSource`.
"""

from __future__ import annotations

import ctypes
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.decoding import BanIndexCache, TokenClasses, TurnConstraints
from townhall.errors import GenerationError

PENALTY_LAST_N = 64  # tokens the repeat penalty looks back over
_DRY_BREAKERS = ("\n", ":", '"', "*")  # llama.cpp's defaults: a match never spans these


def logits_row(ctx: Any, index: int, n_vocab: int) -> Any:
    """Logits of batch position `index` (-1: the last evaluated) as a writable float32 view
    of llama.cpp's buffer."""
    import llama_cpp
    import numpy as np

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(n_vocab,))


class GreedyPicker:
    """Exactly llama.cpp's penalties + greedy samplers, on a numpy view of the logits.

    Same rule (the last 64 picked tokens, each distinct one once: logit <= 0 multiplied by
    the penalty, else divided, in float32) and the same tie-break (first maximum in
    token-id order, as `np.argmax`), so the output is identical, minus a 1 MB copy per token.
    """

    def __init__(self, repeat_penalty: float) -> None:
        import numpy as np

        self._np = np
        self._penalty = np.float32(repeat_penalty)
        self._recent: deque[int] = deque(maxlen=PENALTY_LAST_N)

    def pick(self, row: Any) -> int:
        np = self._np
        logits = row
        if self._recent and self._penalty != 1.0:
            ids = np.fromiter(set(self._recent), dtype=np.int64)
            logits = logits.copy()
            values = logits[ids]
            logits[ids] = np.where(values <= 0, values * self._penalty, values / self._penalty)
        token = int(np.argmax(logits))
        self._recent.append(token)
        return token


class TokenPicker:
    """One turn's token choice: the greedy picker when it matches llama.cpp exactly (greedy,
    no grammar, no DRY, `fast_greedy` on), else llama.cpp's sampler chain.

    Greedy decoding without the chain saves a copy of all n_vocab logits into a candidate
    array every token (1.1 ms with Gemma's 262k vocabulary). Call `close` when the turn ends.
    """

    def __init__(self, llm: Any, request: GenerationRequest, prompt: Sequence[int], n_ctx: int,
                 *, fast_greedy: bool) -> None:
        import llama_cpp

        sampling = request.sampling
        self._llm = llm
        self.greedy = GreedyPicker(sampling.repeat_penalty) if (
            fast_greedy and sampling.temperature <= 0 and not request.grammar
            and sampling.dry_multiplier <= 0) else None
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.chain = None if self.greedy else build_sampler(
            vocab, sampling, llm.n_vocab(), request.grammar, prompt, n_ctx)

    @property
    def needs_row(self) -> bool:
        """Whether `pick` reads the row itself (the chain reads llama.cpp's buffer by index)."""
        return self.greedy is not None

    def pick(self, row: Any, index: int | None) -> int:
        """Pick from the logits of batch position `index`, or from `row` alone when `index` is
        None (a checkpoint's row, held outside the context)."""
        if self.greedy is not None:
            return self.greedy.pick(row)
        if index is None:
            return sample_row(self.chain, row)
        import llama_cpp

        return int(llama_cpp.llama_sampler_sample(self.chain, self._llm.ctx, index))

    def close(self) -> None:
        if self.chain is not None:
            import llama_cpp

            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None


def build_sampler(
    vocab: Any, sampling: SamplingParams, n_vocab: int, grammar: str | None, prompt: Sequence[int], n_ctx: int
) -> Any:
    """llama.cpp's sampler chain for these settings: grammar, penalties, DRY, then greedy or
    top-k / top-p / min-p / temperature / seeded draw."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda s: llama_cpp.llama_sampler_chain_add(chain, s)  # noqa: E731
    if grammar:
        g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not g:
            llama_cpp.llama_sampler_free(chain)
            raise GenerationError("the grammar for this request does not parse")
        add(g)
    add(llama_cpp.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0))
    if sampling.dry_multiplier > 0:
        add(_dry_sampler(vocab, sampling, prompt, n_ctx))
    if sampling.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        if sampling.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        seed = sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
        add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def _dry_sampler(vocab: Any, sampling: SamplingParams, prompt: Sequence[int], n_ctx: int) -> Any:
    """llama.cpp's DRY sampler, fed the prompt first (as llama-server does) so echoes of it count."""
    import llama_cpp

    last_n = n_ctx if sampling.dry_penalty_last_n < 0 else sampling.dry_penalty_last_n
    breakers = (ctypes.c_char_p * len(_DRY_BREAKERS))(*(b.encode() for b in _DRY_BREAKERS))
    dry = llama_cpp.llama_sampler_init_dry(
        vocab, sampling.dry_multiplier, sampling.dry_base, sampling.dry_allowed_length, last_n,
        breakers, len(_DRY_BREAKERS))
    for token in prompt[-last_n:] if last_n else ():
        llama_cpp.llama_sampler_accept(dry, token)
    return dry


def sample_row(sampler: Any, row: Any) -> int:
    """Run a sampler chain over a logits row held outside the context (a checkpoint's)."""
    import llama_cpp
    import numpy as np

    n = row.shape[0]
    data = np.empty(n, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True))
    data["id"] = np.arange(n, dtype=np.intc)
    data["logit"] = row
    data["p"] = 0.0
    array = llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=n, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
    token = int(data["id"][array.selected])
    llama_cpp.llama_sampler_accept(sampler, token)
    return token


class TurnConstraintSource:
    """Each turn's logits step, built from per-agent ban indexes and the model's token classes.

    Lives as long as one loaded model: the token classes are scanned once (about 1 s for
    262k tokens here) and each agent's ban index grows with its banned texts.
    """

    def __init__(self, llm: Any, tokenize: Callable[[str], list[int]], piece: Callable[[int], bytes]) -> None:
        self._llm = llm
        self._piece = piece
        self.bans = BanIndexCache(tokenize)
        self._classes: TokenClasses | None = None

    def for_turn(self, request: GenerationRequest, prompt: list[int]) -> TurnConstraints | None:
        """This turn's logits step, or None when the request asks for none (the common case)."""
        sampling = request.sampling
        n = sampling.no_repeat_ngram_size
        if not n and sampling.min_tokens <= 0:
            return None
        banned = self.bans.index_for(request.agent_id, request.banned_texts, n, request.allowed_texts) if n else None
        return TurnConstraints(self.token_classes(), banned=banned, min_tokens=sampling.min_tokens, history=prompt)

    def token_classes(self) -> TokenClasses:
        """Newline and end-of-generation tokens, scanned once per loaded model."""
        if self._classes is None:
            import llama_cpp

            vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
            buffer = ctypes.create_string_buffer(256)
            to_piece = llama_cpp.llama_token_to_piece

            def piece(token: int) -> bytes:  # one shared buffer: this runs 262k times
                n = to_piece(vocab, token, buffer, 256, 0, False)
                return ctypes.string_at(buffer, n) if n >= 0 else self._piece(token)

            self._classes = TokenClasses.scan(
                self._llm.n_vocab(), piece, lambda t: bool(llama_cpp.llama_vocab_is_eog(vocab, t)))
        return self._classes
