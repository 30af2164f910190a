"""Stances and the closing ballot: reading each participant's stance, counting votes, the minutes.

Right after a participant's turn its state is still resident, so its stance costs only the
ballot cue (StanceMeasured). The closing ballot probes every participant on its full current
view, the moderator announces the count as a scripted turn, then OutcomeDecided and
MinutesWritten go out. Readings and ballots are kept per turn of the tree, so when the path
changes `follow_path` restores what belongs to the new one. The counting rules are pure
(`debate/ballot.py`); the minutes' reasons are the clerk's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from townhall.debate.announcing import Announcer
from townhall.debate.ballot import (
    VOTE_PHASE,
    MinutesEntry,
    VoteCount,
    completed_rounds,
    tally,
    vote_from,
    write_minutes,
)
from townhall.debate.cast import Cast
from townhall.debate.clerk import Clerk
from townhall.debate.prompting import PromptBuilder
from townhall.debate.prompts import BALLOT_CHOICES, resolve_stance, visible
from townhall.debate.transcript import Transcript
from townhall.debate.turn_taker import TurnTaker
from townhall.domain.events import MinutesWritten, OutcomeDecided, StanceMeasured
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import TurnKind
from townhall.engine.base import Engine, ProbeResult
from townhall.errors import TownhallError

log = logging.getLogger(__name__)

# Room the closing probe needs beyond the turn prompt that `PromptBuilder.fit` measures: the
# ballot cue replaces the `Name:` cue and is about a dozen tokens longer.
BALLOT_ROOM_TOKENS = 24


@dataclass
class ProbeCost:
    """What the stance probes of one run cost the engine, for the benchmark."""

    probes: int = 0
    evaluated_tokens: int = 0
    total_ms: float = 0.0

    def add(self, result: ProbeResult) -> None:
        self.probes += 1
        self.evaluated_tokens += result.evaluated_tokens
        self.total_ms += result.total_ms


class Voting:
    def __init__(
        self,
        engine: Engine,
        spec: TownHallSpec,
        cast: Cast,
        transcript: Transcript,
        prompts: PromptBuilder,
        clerk: Clerk,
        turn_taker: TurnTaker,
        announcer: Announcer,
        agent_key: Callable[[str], str],
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.cast = cast
        self.transcript = transcript
        self.prompts = prompts
        self.clerk = clerk
        self.turn_taker = turn_taker
        self.out = announcer
        self.agent_key = agent_key
        self.stances: dict[str, float] = {}  # each participant's latest P(for) on this path
        self.outcome: OutcomeDecided | None = None
        self.minutes: str | None = None
        self.probe_cost = ProbeCost()  # the probes after each turn (the live stance meter)
        self.ballot_cost = ProbeCost()  # the closing ballot's, each on the agent's full view
        self._readings: dict[str, dict[str, float]] = {}  # node -> the stances read right after it
        self._ballots: dict[str, tuple[OutcomeDecided, str | None]] = {}  # path head -> its ballot

    @property
    def probing(self) -> bool:
        """Whether this run reads stances and holds a ballot: the spec asks, the engine can."""
        return self.spec.ballot and self.engine.info.stance_probe is not None

    def follow_path(self) -> None:
        """Stances replayed from the readings after each turn of the path; its head's ballot."""
        self.stances = {}
        for turn in self.transcript.turns:
            self.stances.update(self._readings.get(turn.node, {}))
        head = self.transcript.turns[-1].node if self.transcript.turns else ""
        self.outcome, self.minutes = self._ballots.get(head, (None, None))

    async def after_turn(self, persona: Persona) -> None:
        """The speaker's stance right after its own turn (not the moderator's, not a cut one)."""
        turn = self.transcript.turns[-1]
        if not self.probing or persona is self.cast.moderator or turn.speaker != persona.name or not visible(turn):
            return
        result = await self._read(persona, self.probe_cost)
        if result is not None:
            await self._announce(persona, result, turn.index)

    async def hold(self) -> OutcomeDecided | None:
        """The closing ballot, its announcement and the minutes; None if no probe could be read."""
        votes = []
        last = len(self.transcript.turns) - 1
        for persona in self.cast.speakers:
            await self.prompts.fit(persona, BALLOT_ROOM_TOKENS)
            result = await self._read(persona, self.ballot_cost)
            if result is None:
                continue
            await self._announce(persona, result, last)
            votes.append(vote_from(persona.name, result.share(0)))
        if not votes:
            return None
        counted = tally(votes)
        if self.cast.moderator is not None:
            await self.turn_taker.scripted_turn(self.cast.moderator, counted.announcement, VOTE_PHASE)
        self.outcome = OutcomeDecided(self.out.session_id, counted.votes, counted.votes_for, counted.votes_against,
                                      counted.result, counted.announcement, self.out.clock())
        await self.out.publish(self.outcome)
        self.minutes = await self._write_minutes(counted)
        if self.transcript.turns:
            self._ballots[self.transcript.turns[-1].node] = (self.outcome, self.minutes)
        await self.out.publish(MinutesWritten(self.out.session_id, self.minutes, self.out.clock()))
        return self.outcome

    async def _read(self, persona: Persona, cost: ProbeCost) -> ProbeResult | None:
        """P(for) from the agent's own state and current view; None if the probe failed."""
        prompt = self.prompts.render_ballot(persona)
        try:
            result = await self.engine.probe(self.agent_key(persona.name), prompt, BALLOT_CHOICES)
        except TownhallError as failure:
            log.warning("stance probe for %s failed: %s", persona.name, failure)
            return None
        cost.add(result)
        self.stances[persona.name] = result.share(0)
        if self.transcript.turns:
            self._readings.setdefault(self.transcript.turns[-1].node, {})[persona.name] = result.share(0)
        return result

    def _round(self) -> int:
        spoken: dict[str, int] = {}
        for turn in self.transcript.turns:
            if turn.kind == TurnKind.AGENT and visible(turn):
                spoken[turn.speaker] = spoken.get(turn.speaker, 0) + 1
        return completed_rounds(spoken, [p.name for p in self.cast.speakers])

    async def _announce(self, persona: Persona, result: ProbeResult, turn_index: int) -> None:
        await self.out.publish(StanceMeasured(self.out.session_id, persona.name, self._round(), turn_index,
                                              result.share(0), result.method, self.out.clock()))

    async def _write_minutes(self, counted: VoteCount) -> str:
        """The frame from what is certain; each participant's reason in the model's words."""
        entries = []
        for vote in counted.votes:
            persona = next(p for p in self.cast.speakers if p.name == vote.agent)
            stance = resolve_stance(self.spec, persona)
            reason = await self.clerk.vote_reason(persona, vote.choice)
            entries.append(MinutesEntry(persona.name, persona.title, stance[0] if stance else None, vote, reason))
        return write_minutes(self.spec.title, self.spec.motion, counted, entries)
