"""Logits steps the local engine applies before its sampler: n-gram bans and a minimum length.

Both work on token ids, so they need the model's tokenizer and raw logits; an HTTP backend
cannot apply them (see `DecodingSupport`). They write -inf into the logits in place, ahead
of llama.cpp's sampler chain or the numpy greedy picker, so both paths honour them alike.

Why banned texts are kept per agent: a debate's banned texts grow by one turn per request,
and tokenizing 2,000 tokens of them anew every turn would cost more than the ban itself.
`BanIndexCache` remembers each agent's texts and index and adds only the new texts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Tokenizer = Callable[[str], list[int]]
_TOKEN_CACHE_SIZE = 4096  # distinct texts kept tokenized, across agents


class NgramIndex:
    """Token n-grams seen so far, keyed by their first n−1 tokens, for O(1) lookups per step."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("n-gram size must be at least 1")
        self.n = n
        self._next: dict[tuple[int, ...], set[int]] = {}
        self._allowed: dict[tuple[int, ...], set[int]] = {}

    def allow_sequence(self, tokens: Sequence[int]) -> None:
        """N-grams of `tokens` are never banned, whoever said them first."""
        n = self.n
        for i in range(len(tokens) - n + 1):
            self._allowed.setdefault(tuple(tokens[i : i + n - 1]), set()).add(tokens[i + n - 1])

    def add_sequence(self, tokens: Sequence[int]) -> None:
        n = self.n
        for i in range(len(tokens) - n + 1):
            self._next.setdefault(tuple(tokens[i : i + n - 1]), set()).add(tokens[i + n - 1])

    def add_last(self, history: Sequence[int]) -> None:
        """Record the n-gram that ends at the last token of `history` (one generated step)."""
        if len(history) >= self.n:
            self._next.setdefault(tuple(history[len(history) - self.n : -1]), set()).add(history[-1])

    def banned_after(self, history: Sequence[int]) -> set[int]:
        """Tokens that would complete a known n-gram if picked after `history`."""
        if len(history) < self.n - 1:
            return set()
        key = tuple(history[len(history) - self.n + 1 :]) if self.n > 1 else ()
        banned = self._next.get(key, set())
        allowed = self._allowed.get(key)
        return banned - allowed if allowed and banned else banned

    def __len__(self) -> int:
        return sum(len(v) for v in self._next.values())


@dataclass
class _AgentBans:
    n: int
    texts: tuple[str, ...]
    index: NgramIndex
    allowed: tuple[str, ...] = ()


@dataclass
class BanIndexCache:
    """Each agent's index over its banned texts, extended when the texts only grew at the end."""

    tokenize: Tokenizer
    _tokens: OrderedDict[str, list[int]] = field(default_factory=OrderedDict)
    _agents: dict[str | None, _AgentBans] = field(default_factory=dict)
    texts_tokenized: int = 0  # how many texts were actually run through the tokenizer

    def index_for(
        self, agent_id: str | None, texts: Sequence[str], n: int, allowed: Sequence[str] = ()
    ) -> NgramIndex:
        texts, allowed = tuple(texts), tuple(allowed)
        held = self._agents.get(agent_id)
        if held is not None and held.n == n and held.allowed == allowed and texts[: len(held.texts)] == held.texts:
            fresh = texts[len(held.texts) :]
        else:
            held = _AgentBans(n, (), NgramIndex(n), allowed)
            for text in allowed:
                held.index.allow_sequence(self.tokens_of(text))
            fresh = texts
        for text in fresh:
            held.index.add_sequence(self.tokens_of(text))
        held.texts = texts
        self._agents[agent_id] = held
        return held.index

    def tokens_of(self, text: str) -> list[int]:
        """A text's tokens as it reads after a `Name:` tag: one leading space, no trailing space."""
        cached = self._tokens.get(text)
        if cached is not None:
            self._tokens.move_to_end(text)
            return cached
        tokens = self.tokenize(" " + text.strip()) if text.strip() else []
        self.texts_tokenized += 1
        self._tokens[text] = tokens
        if len(self._tokens) > _TOKEN_CACHE_SIZE:
            self._tokens.popitem(last=False)
        return tokens

    def forget(self, agent_id: str | None) -> None:
        self._agents.pop(agent_id, None)


class TokenClasses:
    """Token ids the logits steps treat specially, for one loaded vocabulary.

    `turn_enders` (end-of-generation tokens and every token whose text holds a newline) are
    never banned, so a turn can always end. Only tokens that start a word (their text begins
    with a space) are ever banned: banning a word's second piece spells it wrong ("we don'
    know" from a banned " don ' t"), and the echo is cut at the next word start anyway.
    """

    def __init__(self, turn_enders: Iterable[int], piece: Callable[[int], bytes]) -> None:
        self.turn_enders = frozenset(turn_enders)
        self._piece = piece
        self._starts: dict[int, bool] = {}

    @classmethod
    def scan(cls, n_vocab: int, piece: Callable[[int], bytes], is_eog: Callable[[int], bool]) -> TokenClasses:
        """`piece` renders a token without specials: control tokens (every end token) come back empty."""
        enders: set[int] = set()
        for token in range(n_vocab):
            text = piece(token)
            if b"\n" in text or (not text and is_eog(token)):
                enders.add(token)
        return cls(enders, piece)

    def bannable(self, token: int) -> bool:
        known = self._starts.get(token)
        if known is None:
            known = self._starts[token] = token not in self.turn_enders and self._piece(token)[:1] in (b" ", b"\t")
        return known


class TurnConstraints:
    """The per-turn logits step: bans n-gram completions and holds off the turn's end.

    `history` holds the prompt's tokens followed by the turn's; call `observe` after every
    picked token so the turn's own n-grams are banned too.
    """

    def __init__(
        self,
        classes: TokenClasses,
        *,
        banned: NgramIndex | None,
        min_tokens: int,
        history: Sequence[int],
    ) -> None:
        self._classes = classes
        self._banned = banned
        self._own = NgramIndex(banned.n) if banned is not None else None
        self._min_tokens = min_tokens
        self._history = list(history[-(banned.n if banned else 1) :]) if history else []
        self._enders_array: Any = None
        self.generated = 0
        self.bans_applied = 0  # steps where at least one candidate was banned (for measurements)

    def masked(self) -> list[int]:
        """Token ids that must not be picked at this step."""
        out: list[int] = []
        if self._banned is not None and self._own is not None:
            ids = self._banned.banned_after(self._history) | self._own.banned_after(self._history)
            ids = {t for t in ids if self._classes.bannable(t)}
            if ids:
                self.bans_applied += 1
                out.extend(ids)
        return out

    def apply(self, logits: Any) -> None:
        """Set the masked logits (a float32 numpy view of this step's row) to -inf in place."""
        import numpy as np

        ids = self.masked()
        if ids:
            logits[np.fromiter(ids, dtype=np.int64, count=len(ids))] = -np.inf
        if self.generated < self._min_tokens:
            if self._enders_array is None:
                self._enders_array = np.fromiter(self._classes.turn_enders, dtype=np.int64)
            logits[self._enders_array] = -np.inf

    def observe(self, token: int) -> None:
        self.generated += 1
        self._history.append(token)
        if self._own is not None:
            self._own.add_last(self._history)
            keep = self._own.n
            if len(self._history) > 4 * keep:
                del self._history[: len(self._history) - keep]


def ngram_overlap(tokens: Sequence[int], texts_tokens: Iterable[Sequence[int]], n: int) -> int:
    """How many of `tokens`' n-grams occur in any of `texts_tokens` (for tests and measurements)."""
    seen: set[tuple[int, ...]] = set()
    for seq in texts_tokens:
        seen.update(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))
    return sum(1 for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n]) in seen)
