"""The clerk: the run's one-off model calls, on no agent's state.

Summaries for the summarize context strategy, the moderator's pick of the next speaker, and
each participant's reason for the minutes. None of them is a turn: each is one request with
`agent_id=None` on a prompt of its own, cut to the context by dropping the oldest lines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from townhall.debate.ballot import clean_reason
from townhall.debate.policies import names_grammar
from townhall.debate.prompts import Line, visible
from townhall.debate.run_parts import RunParts
from townhall.debate.seeds import OneOff, Seeds
from townhall.debate.trimming import trim_turn
from townhall.domain.personas import Persona
from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.errors import TownhallError

log = logging.getLogger(__name__)

MINUTES_REASON_TOKENS = 40
SPEAKER_CHOICE_TOKENS = 16


class Clerk:
    def __init__(self, run: RunParts, seeds: Seeds) -> None:
        self.run = run
        self.seeds = seeds
        self._summaries: dict[tuple[str | None, tuple[Line, ...]], str] = {}

    async def summarize(self, previous: str | None, lines: Sequence[Line]) -> str:
        """Two sentences on `lines` (after the summary before them), for a context strategy.
        Cached: a view rebuilt on the same turns gets the same summary without a call."""
        key = (previous, tuple(lines))
        if key in self._summaries:
            return self._summaries[key]
        max_tokens = max(24, min(80, self.run.engine.info.n_ctx // 8))
        head = f"Notes from a town hall meeting. Motion: {self.run.spec.motion.strip()}\n"
        if previous:
            head += f"Earlier: {previous.strip()}\n"
        head += "\n"
        tail = "\nSummary of what was said above, in two sentences:"
        prompt = await self.fit_lines(head, lines, tail, max_tokens)
        names = self.run.cast.names(self.run.transcript.turns)
        stop = ("\n\n",) + tuple(f"\n{n}:" for n in names) + tuple(self.run.engine.info.eos_markers)
        sampling = SamplingParams(temperature=0.3, max_tokens=max_tokens, seed=self._seed(OneOff.SUMMARY), stop=stop)
        text = trim_turn(await self.complete(prompt, sampling), finish_reason="length", names=names,
                         markers=self.run.engine.info.eos_markers)
        self._summaries[key] = text
        return text

    async def pick_speaker(self, candidates: Sequence[str], head: str, lines: Sequence[Line]) -> str | None:
        """The moderator's pick among `candidates`, constrained to their names by a grammar;
        None when the call fails (the policy then falls back to the order)."""
        assert self.run.cast.moderator is not None
        tail = f"{self.run.cast.moderator.name}: Thank you. Next I call on"
        prompt = await self.fit_lines(head, lines, tail, SPEAKER_CHOICE_TOKENS)
        sampling = SamplingParams(temperature=0.7, max_tokens=SPEAKER_CHOICE_TOKENS,
                                  seed=self._seed(OneOff.SPEAKER_CHOICE), stop=("\n",))
        try:
            answer = await self.complete(prompt, sampling, grammar=names_grammar(candidates))
        except TownhallError as failure:
            log.warning("speaker choice failed: %s", failure)
            return None
        return answer.strip().rstrip(".,!?")

    async def vote_reason(self, persona: Persona, choice: str) -> str:
        """One clause on why `persona` voted as it did, written from its own words in the debate."""
        own = [Line(t.speaker, " ".join(t.content.split())) for t in self.run.transcript.turns
               if t.speaker == persona.name and visible(t)]
        if not own:
            return ""
        head = f"Minutes of a town hall meeting.\nMotion: {self.run.spec.motion.strip()}\n\nWhat {persona.name} said:\n"
        tail = f"\nThe clerk's note: {persona.name} voted {choice} the motion because"
        prompt = await self.fit_lines(head, own, tail, MINUTES_REASON_TOKENS)
        sampling = SamplingParams(temperature=0.3, max_tokens=MINUTES_REASON_TOKENS,
                                  seed=self._seed(OneOff.MINUTES_REASON),
                                  stop=("\n",) + tuple(self.run.engine.info.eos_markers))
        try:
            text = await self.complete(prompt, sampling)
        except TownhallError as failure:
            log.warning("minutes: %s's reason failed: %s", persona.name, failure)
            return ""
        return clean_reason(text)

    async def fit_lines(self, head: str, lines: Sequence[Line], tail: str, max_tokens: int) -> str:
        """A one-off prompt with as many of the latest `lines` as fit the context."""
        kept = list(lines)
        while True:
            prompt = head + "".join(f"{line.speaker}: {line.text}\n" for line in kept) + tail
            if not kept or await self.run.engine.count_tokens(prompt) + max_tokens <= self.run.engine.info.n_ctx:
                return prompt
            kept.pop(0)

    async def complete(self, prompt: str, sampling: SamplingParams, grammar: str | None = None) -> str:
        """The whole text of one request on no agent's state."""
        generation = self.run.engine.generate(GenerationRequest(agent_id=None, prompt=prompt, sampling=sampling,
                                                            grammar=grammar))
        return await generation.result()

    def _seed(self, call: OneOff) -> int:
        return self.seeds.one_off(call, len(self.run.transcript.turns))
