"""Who speaks next: a small interface, one class per policy.

A policy sees the session so far (`PolicyContext`) and names the next speaker.
Model-driven choices go through `ctx.ask_model`, which the scheduler implements
with a grammar-constrained request, so the policy stays free of engine details.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from townhall.personas import Persona
from townhall.turns import Turn, TurnKind

AskModel = Callable[[Sequence[str]], Awaitable[str | None]]


@dataclass
class PolicyContext:
    """What a policy may look at. `speakers` excludes the moderator; `exclude` are skipped names."""

    speakers: Sequence[Persona]
    moderator: Persona | None
    turns: Sequence[Turn]
    rng: random.Random
    exclude: frozenset[str] = frozenset()
    ask_model: AskModel | None = None

    @property
    def order(self) -> list[str]:
        """Speaking order: the moderator (if any) first, then the participants."""
        names = [p.name for p in self.speakers]
        return ([self.moderator.name] if self.moderator else []) + names

    @property
    def last_speaker(self) -> str | None:
        for turn in reversed(self.turns):
            if turn.kind in (TurnKind.AGENT, TurnKind.MODERATOR):
                return turn.speaker
        return None

    @property
    def last_turn(self) -> Turn | None:
        return self.turns[-1] if self.turns else None


class TurnPolicy(Protocol):
    name: ClassVar[str]

    async def choose(self, ctx: PolicyContext) -> str: ...

    def peek(self, ctx: PolicyContext) -> str | None:
        """The next speaker if it is known without asking the model, else None."""


def _after(order: Sequence[str], last: str | None, exclude: frozenset[str]) -> str:
    """Round-robin successor of `last`, skipping excluded names (unless all are excluded)."""
    candidates = [n for n in order if n not in exclude] or list(order)
    if last is None or last not in order:
        return candidates[0]
    start = order.index(last)
    for step in range(1, len(order) + 1):
        name = order[(start + step) % len(order)]
        if name in candidates:
            return name
    return candidates[0]


def mentioned(text: str, names: Sequence[str]) -> list[str]:
    """Names addressed in `text`, in the order they first appear (whole words, any case)."""
    hits: list[tuple[int, str]] = []
    for name in names:
        match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, flags=re.IGNORECASE)
        if match:
            hits.append((match.start(), name))
    return [name for _, name in sorted(hits)]


class RoundRobin:
    name: ClassVar[str] = "round_robin"

    def peek(self, ctx: PolicyContext) -> str | None:
        return _after(ctx.order, ctx.last_speaker, ctx.exclude)

    async def choose(self, ctx: PolicyContext) -> str:
        return _after(ctx.order, ctx.last_speaker, ctx.exclude)


@dataclass
class RandomPolicy:
    """Weighted by talkativeness; never the same speaker twice running."""

    name: ClassVar[str] = "random"
    _drawn: str | None = None
    _drawn_after: int = -1

    def _draw(self, ctx: PolicyContext) -> str:
        if self._drawn is not None and self._drawn_after == len(ctx.turns) and self._drawn not in ctx.exclude:
            return self._drawn
        order = ctx.order
        last = ctx.last_speaker
        pool = [n for n in order if n != last and n not in ctx.exclude] or [n for n in order if n != last] or order
        by_name = {p.name: p for p in [*ctx.speakers, *([ctx.moderator] if ctx.moderator else [])]}
        weights = [max(by_name[n].talkativeness, 0.02) for n in pool]
        self._drawn = ctx.rng.choices(pool, weights=weights, k=1)[0]
        self._drawn_after = len(ctx.turns)
        return self._drawn

    def peek(self, ctx: PolicyContext) -> str | None:
        return self._draw(ctx)

    async def choose(self, ctx: PolicyContext) -> str:
        choice = self._draw(ctx)
        self._drawn = None
        return choice


class MentionPolicy:
    """Whoever the last turn addressed by name speaks next; otherwise round robin."""

    name: ClassVar[str] = "mention"

    def peek(self, ctx: PolicyContext) -> str | None:
        last = ctx.last_turn
        if last is not None and last.content:
            for name in mentioned(last.content, ctx.order):
                if name != last.speaker and name not in ctx.exclude:
                    return name
        return _after(ctx.order, ctx.last_speaker, ctx.exclude)

    async def choose(self, ctx: PolicyContext) -> str:
        return self.peek(ctx) or ctx.order[0]


@dataclass
class ModeratorPolicy:
    """The moderator opens, speaks between rounds and names who speaks next.

    A round is every participant once. After the moderator speaks, a participant it
    named who has not yet spoken this round goes next; otherwise (and within a round)
    the model picks among those still waiting, constrained by a grammar over their
    names. An unusable answer falls to the next waiting participant in order, never
    back to the one who just spoke (the AutoGen loop, #7471).
    """

    name: ClassVar[str] = "moderator"

    def _waiting(self, ctx: PolicyContext) -> list[str] | None:
        """Participants yet to speak in this round; None when the moderator is due."""
        assert ctx.moderator is not None
        spoken: list[str] = []
        for turn in reversed(ctx.turns):
            if turn.speaker == ctx.moderator.name and turn.kind in (TurnKind.MODERATOR, TurnKind.AGENT):
                break
            if turn.kind == TurnKind.AGENT:
                spoken.append(turn.speaker)
        else:
            if not any(t.speaker == ctx.moderator.name for t in ctx.turns):
                return None  # the moderator opens
        names = [p.name for p in ctx.speakers]
        waiting = [n for n in names if n not in spoken]
        return waiting or None

    def peek(self, ctx: PolicyContext) -> str | None:
        if ctx.moderator is None:
            return _after(ctx.order, ctx.last_speaker, ctx.exclude)
        waiting = self._waiting(ctx)
        if waiting is None:
            return ctx.moderator.name if ctx.moderator.name not in ctx.exclude else None
        last = ctx.last_turn
        if last is not None and last.speaker == ctx.moderator.name:
            for name in mentioned(last.content, waiting):
                if name not in ctx.exclude:
                    return name
        candidates = [n for n in waiting if n not in ctx.exclude]
        return candidates[0] if len(candidates) == 1 else None

    async def choose(self, ctx: PolicyContext) -> str:
        if ctx.moderator is None:
            return _after(ctx.order, ctx.last_speaker, ctx.exclude)
        known = self.peek(ctx)
        if known is not None:
            return known
        waiting = self._waiting(ctx) or [p.name for p in ctx.speakers]
        previous = ctx.last_speaker
        candidates = [n for n in waiting if n not in ctx.exclude and n != previous]
        if not candidates:
            candidates = [p.name for p in ctx.speakers if p.name != previous] or [p.name for p in ctx.speakers]
        if len(candidates) == 1:
            return candidates[0]
        if ctx.ask_model is not None:
            answer = await ctx.ask_model(candidates)
            if answer is not None:
                for name in candidates:
                    if answer.strip().casefold() == name.casefold():
                        return name
        return candidates[0]


POLICIES: dict[str, type] = {
    RoundRobin.name: RoundRobin,
    RandomPolicy.name: RandomPolicy,
    MentionPolicy.name: MentionPolicy,
    ModeratorPolicy.name: ModeratorPolicy,
}


def make_policy(name: str) -> TurnPolicy:
    from townhall.errors import ConfigError

    try:
        return POLICIES[name]()
    except KeyError:
        raise ConfigError(f"unknown turn policy '{name}' (choose from {', '.join(POLICIES)})") from None


def names_grammar(names: Sequence[str]) -> str:
    """A GBNF grammar whose only sentences are one of `names` (after a space)."""
    alternatives = " | ".join('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names)
    return f'root ::= " "? ({alternatives})\n'

