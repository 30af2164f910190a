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
import math
from collections.abc import Mapping
from dataclasses import dataclass

from townhall.debate.ballot import (
    VOTE_PHASE,
    MinutesEntry,
    VoteCount,
    completed_rounds,
    tally,
    vote_from,
    write_minutes,
)
from townhall.debate.clerk import Clerk
from townhall.debate.prompting import PromptBuilder
from townhall.debate.prompts import BALLOT_CHOICES, resolve_stance, visible
from townhall.debate.run_parts import RunParts
from townhall.debate.turn_taker import TurnTaker
from townhall.domain.events import MinutesWritten, OutcomeDecided, StanceMeasured
from townhall.domain.personas import Persona
from townhall.domain.turns import TurnKind
from townhall.engine.base import ProbeResult
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


LEAN_CAP = math.log(0.95 / 0.05)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def room_calibrated(raw: Mapping[str, float]) -> dict[str, float]:
    """Each reading with the room's shared lean taken out: its log-odds of " for" minus the mean
    log-odds of every speaker's latest reading, the mean shrunk toward even by one phantom
    reading of 0.5 (so a room of one is not forced to 0.5).

    Measured on the embedded model (six town halls, two speakers for and two against each): the
    raw readings lean " for" for everyone (a ballot line after the motion alone reads 0.93-0.99
    for; speakers who argued against all evening read 0.4-0.97), and the ballot followed the
    bias, not the debate. Every speaker shares that lean, so it cancels in the difference; what
    is left is which way each one differs from the rest of the room. Holding each reading
    against a listener who said nothing instead overshot: the listener reads " for" more than
    anyone who spoke.
    """
    if not raw:
        return {}
    logits = {name: _logit(p) for name, p in raw.items()}
    # One certain speaker (P(for) 0.999, log-odds 7) must not drag the room's lean after it: each
    # counts toward the lean at most as much as a reading of 0.95 does.
    lean = sum(max(-LEAN_CAP, min(LEAN_CAP, value)) for value in logits.values()) / (len(logits) + 1)
    return {name: 1 / (1 + math.exp(-(value - lean))) for name, value in logits.items()}


class Voting:
    """Reads stances, holds the closing ballot and writes the minutes, kept per turn of the tree
    so a change of path brings back what belongs to the new one (`follow_path`)."""

    def __init__(self, run: RunParts, prompts: PromptBuilder, clerk: Clerk, turn_taker: TurnTaker) -> None:
        self.run = run
        self.prompts = prompts
        self.clerk = clerk
        self.turn_taker = turn_taker
        self.stances: dict[str, float] = {}  # each participant's latest P(for) on this path, calibrated
        self._raw: dict[str, float] = {}  # the same readings as the model gave them (`room_calibrated`)
        self.outcome: OutcomeDecided | None = None
        self.minutes: str | None = None
        self.probe_cost = ProbeCost()  # the probes after each turn (the live stance meter)
        self.ballot_cost = ProbeCost()  # the closing ballot's, each on the agent's full view
        self._readings: dict[str, dict[str, float]] = {}  # node -> the stances read right after it
        self._ballots: dict[str, tuple[OutcomeDecided, str | None]] = {}  # path head -> its ballot

    @property
    def probing(self) -> bool:
        """Whether this run reads stances and holds a ballot: the spec asks, the engine can."""
        return self.run.spec.ballot and self.run.engine.info.stance_probe is not None

    def follow_path(self) -> None:
        """Stances replayed from the readings after each turn of the path; its head's ballot."""
        self._raw = {}
        for turn in self.run.transcript.turns:
            self._raw.update(self._readings.get(turn.node, {}))
        self.stances = room_calibrated(self._raw)
        head = self.run.transcript.turns[-1].node if self.run.transcript.turns else ""
        self.outcome, self.minutes = self._ballots.get(head, (None, None))

    async def after_turn(self, persona: Persona) -> None:
        """The speaker's stance right after its own turn (not the moderator's, not a cut one)."""
        turn = self.run.transcript.turns[-1]
        if not self.probing or persona is self.run.cast.moderator or turn.speaker != persona.name or not visible(turn):
            return
        if await self._read(persona, self.probe_cost) is not None:
            await self._announce(persona, self.stances[persona.name], turn.index)

    async def hold(self) -> OutcomeDecided | None:
        """The closing ballot, its announcement and the minutes; None if no probe could be read."""
        voters = []
        last = len(self.run.transcript.turns) - 1
        for persona in self.run.cast.speakers:
            await self.prompts.fit(persona, BALLOT_ROOM_TOKENS)
            if await self._read(persona, self.ballot_cost) is not None:
                voters.append(persona)
        if not voters:
            return None
        votes = []
        for persona in voters:  # calibrated on the whole room's closing readings
            await self._announce(persona, self.stances[persona.name], last)
            votes.append(vote_from(persona.name, self.stances[persona.name]))
        counted = tally(votes)
        if self.run.cast.moderator is not None:
            await self.turn_taker.scripted_turn(self.run.cast.moderator, counted.announcement, VOTE_PHASE)
        self.outcome = OutcomeDecided(self.run.out.session_id, counted.votes, counted.votes_for, counted.votes_against,
                                      counted.result, counted.announcement, self.run.out.clock())
        await self.run.out.publish(self.outcome)
        self.minutes = await self._write_minutes(counted)
        if self.run.transcript.turns:
            self._ballots[self.run.transcript.turns[-1].node] = (self.outcome, self.minutes)
        await self.run.out.publish(MinutesWritten(self.run.out.session_id, self.minutes, self.run.out.clock()))
        return self.outcome

    async def _read(self, persona: Persona, cost: ProbeCost) -> ProbeResult | None:
        """P(for) from the agent's own state and current view; None if the probe failed."""
        prompt = self.prompts.render_ballot(persona)
        try:
            result = await self.run.engine.probe(self.run.agent_key(persona.name), prompt, BALLOT_CHOICES)
        except TownhallError as failure:
            log.warning("stance probe for %s failed: %s", persona.name, failure)
            return None
        cost.add(result)
        self._raw[persona.name] = result.share(0)
        self.stances = room_calibrated(self._raw)
        if self.run.transcript.turns:
            self._readings.setdefault(self.run.transcript.turns[-1].node, {})[persona.name] = result.share(0)
        return result

    def _round(self) -> int:
        spoken: dict[str, int] = {}
        for turn in self.run.transcript.turns:
            if turn.kind == TurnKind.AGENT and visible(turn):
                spoken[turn.speaker] = spoken.get(turn.speaker, 0) + 1
        return completed_rounds(spoken, [p.name for p in self.run.cast.speakers])

    async def _announce(self, persona: Persona, p_for: float, turn_index: int) -> None:
        method = self.run.engine.info.stance_probe or "logits"
        await self.run.out.publish(StanceMeasured(self.run.out.session_id, persona.name, self._round(), turn_index,
                                              p_for, method, self.run.out.clock()))

    async def _write_minutes(self, counted: VoteCount) -> str:
        """The frame from what is certain; each participant's reason in the model's words."""
        entries = []
        for vote in counted.votes:
            persona = next(p for p in self.run.cast.speakers if p.name == vote.agent)
            stance = resolve_stance(self.run.spec, persona)
            reason = await self.clerk.vote_reason(persona, vote.choice)
            entries.append(MinutesEntry(persona.name, persona.title, stance[0] if stance else None, vote, reason))
        return write_minutes(self.run.spec.title, self.run.spec.motion, counted, entries)
