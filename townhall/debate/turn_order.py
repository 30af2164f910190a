"""Whose turn is next: the spec's turn policy, asked about the current path.

A policy's only state is a cached draw, so when the path changes the policy is made afresh
(`reset`). Under the agenda policy the next turn also has a slot: its phase, and the
moderator's line when the agenda writes it. An audience line still unanswered comes before
any policy (`answer`, the rules in `debate/addressing.py`).
"""

from __future__ import annotations

import random

from townhall.debate.addressing import Answer, best_fit, handed_to, handoff_line, open_question
from townhall.debate.cast import Cast
from townhall.debate.policies import (
    AgendaPolicy,
    AgendaSlot,
    AskModel,
    PolicyContext,
    StanceView,
    TurnPolicy,
    make_policy,
)
from townhall.debate.prompts import resolve_stance
from townhall.debate.transcript import Transcript
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec


class TurnOrder:
    def __init__(self, spec: TownHallSpec, cast: Cast, transcript: Transcript, rng: random.Random,
                 ask_model: AskModel) -> None:
        self.spec = spec
        self.cast = cast
        self.transcript = transcript
        self.rng = rng
        self.ask_model = ask_model
        self.policy = self._make_policy()

    def reset(self) -> None:
        self.policy = self._make_policy()

    def _make_policy(self) -> TurnPolicy:
        if self.spec.policy != AgendaPolicy.name:
            return make_policy(self.spec.policy)
        stances = {}
        for p in self.cast.speakers:
            stance = resolve_stance(self.spec, p)
            if stance is not None:
                stances[p.name] = StanceView(*stance)
        return AgendaPolicy(motion=self.spec.motion, title=self.spec.title, stances=stances, total=self.spec.max_turns)

    def _context(self, exclude: frozenset[str] = frozenset()) -> PolicyContext:
        return PolicyContext(speakers=self.cast.speakers, moderator=self.cast.moderator, turns=self.transcript.turns,
                             rng=self.rng, exclude=exclude, ask_model=self.ask_model)

    def slot(self) -> AgendaSlot | None:
        """The agenda's slot for the next turn; None under any other policy."""
        return self.policy.slot(self._context()) if isinstance(self.policy, AgendaPolicy) else None

    def peek(self) -> str | None:
        """The next speaker if it is known without asking the model."""
        answer = self.answer()
        if answer is not None and answer.speaker is not None:
            return answer.speaker
        return self.policy.peek(self._context())

    def answer(self) -> Answer | None:
        """The turn an unanswered audience line is due, before any policy; None when none is.

        A named participant answers; otherwise, under the agenda with a moderator, the
        moderator hands the question on (then the one it named answers), and under any
        other policy the policy's next speaker answers.
        """
        turns = self.transcript.turns
        question = open_question(turns)
        if question is None:
            return None
        names = [p.name for p in self.cast.speakers]
        if question.addressed in names:
            return Answer(question, question.addressed)
        moderator = self.cast.moderator
        if not isinstance(self.policy, AgendaPolicy) or moderator is None:
            return Answer(question, None)
        to = handed_to(turns, question)
        if to is not None:
            return Answer(question, to)
        concerns = {n: self.policy.stances[n].concern for n in names if n in self.policy.stances}
        fit = best_fit(question.content, concerns)
        to = fit or self._next_participant(names)
        return Answer(question, moderator.name, handoff_line(to, concerns[fit] if fit else None), to)

    def _next_participant(self, names: list[str]) -> str:
        """The participant the agenda calls next (the floor starts with them)."""
        assert isinstance(self.policy, AgendaPolicy)
        return self.policy.next_participant(self._context()) or names[0]

    async def choose(self, skip: bool) -> Persona:
        """The next speaker; `skip` passes over the one the policy would pick."""
        exclude: frozenset[str] = frozenset()
        if skip:
            skipped = self.policy.peek(self._context())
            if skipped:
                exclude = frozenset({skipped})
        name = await self.policy.choose(self._context(exclude))
        return self.cast.persona(name)
