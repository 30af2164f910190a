"""Who speaks next: a small interface, one class per policy.

A policy sees the session so far (`PolicyContext`) and names the next speaker.
Model-driven choices go through `ctx.ask_model`, which the scheduler implements
with a grammar-constrained request, so the policy stays free of engine details.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from townhall.domain.personas import Persona
from townhall.domain.turns import Turn, TurnKind

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


OPENING, QUESTIONS, CLOSING = "opening", "questions", "closing"
ADJOURNMENT = "Thank you all for speaking tonight. Your views are in the minutes. This meeting is adjourned."
PHASE_TITLES = {OPENING: "Opening statements", QUESTIONS: "Questions and rebuttals", CLOSING: "Closing statements"}


@dataclass(frozen=True)
class StanceView:
    """A participant's side and concern as the agenda words them (resolved by the scheduler)."""

    side: str  # for | against | undecided
    concern: str


@dataclass(frozen=True)
class AgendaSlot:
    """One turn of the agenda: its phase, who speaks, and the moderator's words if scripted."""

    phase: str
    speaker: str
    line: str | None = None


def side_words(side: str) -> str:
    return {"for": "for the motion", "against": "against the motion"}.get(side, "undecided")


@dataclass
class AgendaPolicy:
    """A town hall in three phases: opening statements, questions and rebuttals, closing statements.

    Every participant opens once, in order; then the moderator asks a named
    participant about their own stated concern, that participant answers and one
    from another side replies; then everyone closes once and the moderator
    adjourns. The moderator's lines are written here from the motion, the
    participants and their stances rather than by the model: a question to a named
    person about their concern is the strongest cue a small model gets, and a base
    model asked to chair invents another meeting. The plan fills `total` turns,
    the closing statements always fitting at the end.
    """

    name: ClassVar[str] = "agenda"
    motion: str = ""
    title: str | None = None
    stances: dict[str, StanceView] = field(default_factory=dict)
    total: int | None = None
    _plan: list[AgendaSlot] | None = None

    def plan(self, ctx: PolicyContext) -> list[AgendaSlot]:
        if self._plan is None:
            self._plan = self._build(ctx)
        return self._plan

    def _index(self, ctx: PolicyContext) -> int:
        """Where the plan stands: the turns said so far that are not the audience's lines or the
        answers to them (`Turn.answers`), so the plan goes on where a question cut in."""
        return sum(1 for t in ctx.turns if t.kind != TurnKind.AUDIENCE and t.answers is None)

    def next_participant(self, ctx: PolicyContext) -> str | None:
        """The next participant (not the moderator) the plan gives a turn to; None past its end."""
        chair = ctx.moderator.name if ctx.moderator else None
        return next((s.speaker for s in self.plan(ctx)[self._index(ctx):] if s.speaker != chair), None)

    def slot(self, ctx: PolicyContext) -> AgendaSlot:
        """The slot for the next turn: the n-th turn of the session the plan counts (`_index`)."""
        plan = self.plan(ctx)
        index = self._index(ctx)
        if index < len(plan):
            return plan[index]
        names = [p.name for p in ctx.speakers]
        return AgendaSlot(CLOSING, _after(names, ctx.last_speaker, ctx.exclude))

    def peek(self, ctx: PolicyContext) -> str | None:
        slot = self.slot(ctx)
        if slot.speaker in ctx.exclude:
            names = [p.name for p in ctx.speakers]
            return _after(names, slot.speaker, ctx.exclude)
        return slot.speaker

    async def choose(self, ctx: PolicyContext) -> str:
        return self.peek(ctx) or ctx.order[0]

    # -- the plan ---------------------------------------------------------------------
    def _stance(self, name: str) -> StanceView:
        return self.stances.get(name) or StanceView("undecided", "what this motion means for them")

    def _build(self, ctx: PolicyContext) -> list[AgendaSlot]:
        names = [p.name for p in ctx.speakers]
        chair = ctx.moderator.name if ctx.moderator else None
        opening = [AgendaSlot(OPENING, chair, self._welcome(names))] if chair else []
        opening += [AgendaSlot(OPENING, n) for n in names]
        closing = [AgendaSlot(CLOSING, chair, self._closing_call(names))] if chair else []
        closing += [AgendaSlot(CLOSING, n) for n in names]
        if chair:
            closing.append(AgendaSlot(CLOSING, chair, ADJOURNMENT))
        total = self.total if self.total is not None else len(opening) + len(closing) + 6 * len(names)
        middle_len = total - len(opening) - len(closing)
        middle = self._questions(names, chair, max(middle_len, 0))
        return opening + middle + closing

    def _questions(self, names: list[str], chair: str | None, count: int) -> list[AgendaSlot]:
        slots: list[AgendaSlot] = []
        previous = names[-1]
        cycle = 0
        while len(slots) < count:
            target = names[cycle % len(names)]
            replier = self._replier(names, target, cycle)
            if previous == target:  # ask about someone else's words, never the target's own
                previous = names[(names.index(target) - 1) % len(names)]
            if chair:
                question = self._question(target, previous, cycle // len(names) + cycle)
                slots.append(AgendaSlot(QUESTIONS, chair, question))
            slots.append(AgendaSlot(QUESTIONS, target))
            slots.append(AgendaSlot(QUESTIONS, replier))
            previous = replier
            cycle += 1
        slots = slots[:count]
        if slots and slots[-1].line is not None:  # never end the phase on an unanswered question
            last_spoke = next((s.speaker for s in reversed(slots) if s.line is None), names[-1])
            slots[-1] = AgendaSlot(QUESTIONS, _after(names, last_spoke, frozenset()))
        return slots

    def _replier(self, names: list[str], target: str, cycle: int) -> str:
        """Someone on another side than `target` (rotating), else the next participant."""
        side = self._stance(target).side
        others = [n for n in names if n != target]
        opposed = [n for n in others if self._stance(n).side != side]
        pool = opposed or others
        return pool[cycle % len(pool)]

    def _welcome(self, names: list[str]) -> str:
        where = f"the {self.title}" if self.title else "this town hall"
        motion = self.motion.strip().rstrip(".?!")
        return (
            f"Good evening and welcome to {where}. The motion tonight: {motion}. "
            f"First, opening statements from {_listing(names)}: each of you, say which side you are on "
            f"and give your reason. {names[0]}, you are {side_words(self._stance(names[0]).side)}. Please begin."
        )

    def _question(self, target: str, previous: str, variant: int) -> str:
        stance = self._stance(target)
        concern = stance.concern
        if stance.side == "undecided":
            options = [
                f"{target}, you have not made up your mind. What about {concern}?",
                f"{target}, you care about {concern}. What would it take to win your vote?",
            ]
        else:
            options = [
                f"{target}, you are {side_words(stance.side)}, and you care about {concern}. Tell us why.",
                f"{target}, {previous} just spoke. What do you say to {previous} about {concern}?",
                f"{target}, what is your strongest reason to be {side_words(stance.side)}?",
            ]
        return options[variant % len(options)]

    def _closing_call(self, names: list[str]) -> str:
        return (
            f"We are nearly out of time. Closing statements now, one each, in the same order: "
            f"{_listing(names)}. Tell us if you are for or against, and the one reason that decides it. "
            f"{names[0]}, your last word on the motion."
        )


def _listing(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


POLICIES: dict[str, type] = {
    RoundRobin.name: RoundRobin,
    RandomPolicy.name: RandomPolicy,
    MentionPolicy.name: MentionPolicy,
    ModeratorPolicy.name: ModeratorPolicy,
    AgendaPolicy.name: AgendaPolicy,
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

