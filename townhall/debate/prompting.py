"""Each agent's prompt and sampling for its next turn or its ballot.

The prompt format is picked once the engine is started (it depends on the model's chat
template). Each agent keeps an `AgentView` of the path (the turns it still sees, a summary
of the rest); when its prompt would not fit, the context strategy cuts the view, the
agent's KV state is forgotten and StrategyApplied goes out. The n-gram ban is fed here too:
texts an agent must never copy, and texts every speaker may repeat despite the ban.
"""

from __future__ import annotations

from collections.abc import Sequence

from townhall.debate.context import PROMPT_OVERHEAD, ContextStrategy, FitJob, SummarizeFn
from townhall.debate.prompts import (
    AgentView,
    Line,
    PromptFormat,
    Rendered,
    choose_format,
    exemplar_lines,
    resolve_stance,
    stop_strings,
    topic_last_format,
    visible,
)
from townhall.debate.openings import all_openings, choose_opening
from townhall.debate.run_parts import RunParts
from townhall.debate.seeds import Seeds
from townhall.debate.trimming import clean_spoken
from townhall.domain.events import StrategyApplied
from townhall.domain.personas import Persona
from townhall.engine.base import SamplingParams

# Debate sampling, under the spec's and the persona's own overrides; tuned with
# `townhall bench --quality` on the embedded model (see README).
DEBATE_SAMPLING: dict[str, object] = {
    "temperature": 0.7,
    "max_tokens": 64,
    "no_repeat_ngram_size": 3,  # never repeat a token 3-gram already said in the debate
    "min_tokens": 12,  # a newline cannot end a turn before this many tokens
}
# What every speaker may say despite the n-gram ban, besides the motion, the names and the concerns.
STANCE_PHRASES = ("I am for the motion. I am against the motion. I am undecided on the motion. I'm for the motion. "
                  "I'm against the motion. I'm undecided about the motion. I agree with you. I disagree with you.")


class PromptBuilder:
    """Renders, fits and parameterises every agent's requests on one run's path."""

    def __init__(
        self,
        run: RunParts,
        seeds: Seeds,
        strategy: ContextStrategy,
        summarize: SummarizeFn,
        topic_last: bool = False,
    ) -> None:
        self.run = run
        self.seeds = seeds
        self.strategy = strategy
        self.summarize = summarize
        # generate's layout: the topic after the header (prompts.topic_last_format), so the
        # first prompts of many conversations begin alike and a batched engine shares them.
        self.topic_last = topic_last
        self.views: dict[str, AgentView] = {p.name: AgentView(p.name) for p in run.cast.participants}
        self._format: PromptFormat | None = None
        self._repeatable: tuple[str, ...] | None = None

    # -- the format ---------------------------------------------------------------------------
    def choose_format(self) -> None:
        """Pick the format for the started engine's model."""
        chosen = choose_format(self.run.spec, self.run.cast.participants, self.run.engine.info.chat_template)
        self._format = topic_last_format(chosen) if self.topic_last else chosen

    @property
    def ready(self) -> bool:
        return self._format is not None

    @property
    def format(self) -> PromptFormat:
        assert self._format is not None, "choose_format() first (Scheduler.prepare)"
        return self._format

    # -- views ----------------------------------------------------------------------------------
    def forget_views_from(self, start: int) -> None:
        """The path changed from turn `start` on: a view that dropped or summarised a turn from
        there on starts over (the context strategy cuts it again if needed)."""
        for name, view in list(self.views.items()):
            if view.first > start:
                fresh = AgentView(name)
                fresh.rebuilds = view.rebuilds
                self.views[name] = fresh

    def lines(self, view: AgentView) -> list[Line]:
        return [line for _, line in self._entries(view)]

    def _entries(self, view: AgentView) -> list[tuple[int, Line]]:
        return [
            (i, Line(t.speaker, " ".join(t.content.split()), t.answers is not None and not t.scripted))
            for i, t in enumerate(self.run.transcript.turns)
            if i >= view.first and visible(t)
        ]

    def _render(self, persona: Persona, view: AgentView, answering: bool = False) -> Rendered:
        return self.format.render(persona, view.summary, self.lines(view), answering)

    def render_ballot(self, persona: Persona) -> str:
        """The agent's ballot prompt on its current view (it shares the turn prompt's prefix)."""
        view = self.views[persona.name]
        return self.format.render_ballot(persona, view.summary, self.lines(view))

    def chair_context(self) -> tuple[str, list[Line]]:
        """What the moderator's pick of a speaker reads: a head and the last eight lines."""
        moderator = self.run.cast.moderator
        assert moderator is not None
        lines = self.lines(AgentView(moderator.name))[-8:]
        head = self.format.fixed_part(moderator) if self.format.name == "transcript" else ""
        return head or f"Town hall meeting. Motion: {self.run.spec.motion.strip()}\n", lines

    async def fit(self, persona: Persona, max_tokens: int, answering: bool = False) -> Rendered:
        """Render the agent's prompt (`answering`: cued to answer the audience); if it would
        overflow, apply the context strategy."""
        view = self.views[persona.name]
        rendered = self._render(persona, view, answering)
        n_ctx = self.run.engine.info.n_ctx
        needed = await self.run.engine.count_tokens(rendered.prompt)
        if needed + max_tokens + PROMPT_OVERHEAD <= n_ctx:
            return rendered
        fixed = await self.run.engine.count_tokens(self.format.render(persona, None, []).prompt)

        async def measure(v: AgentView) -> int:
            return await self.run.engine.count_tokens(self._render(persona, v, answering).prompt)

        job = FitJob(agent=persona.name, view=view, entries=self._entries(view), n_ctx=n_ctx, max_tokens=max_tokens,
                     fixed_tokens=fixed, measure=measure, count=self.run.engine.count_tokens, summarize=self.summarize)
        if fixed + max_tokens + PROMPT_OVERHEAD > n_ctx:
            raise job.too_small(fixed)
        detail = await self.strategy.fit(job)
        view.rebuilds += 1
        self.run.engine.forget(self.run.agent_key(persona.name))
        out = self.run.out
        await out.publish(StrategyApplied(out.session_id, persona.name, self.strategy.name, detail, out.clock()))
        return self._render(persona, view, answering)

    # -- sampling and the n-gram ban ------------------------------------------------------------
    def sampling(self, persona: Persona, index: int, retry: int) -> SamplingParams:
        """Turn `index`'s parameters for draw `retry`: the debate's, the spec's, the persona's,
        with a seed (`Seeds.turn`) and the stops that end the speaker's line."""
        base = SamplingParams().merged(DEBATE_SAMPLING, self.run.spec.sampling, persona.sampling)
        names = self.run.cast.names(self.run.transcript.turns)
        eos = self.run.engine.info.eos_markers
        stops = stop_strings(persona.name, names, eos, self.format.generic_stops) + tuple(base.stop)
        seed = self.seeds.turn(index, retry, self.run.transcript.tree.current)
        return base.merged({"seed": seed, "stop": tuple(dict.fromkeys(stops))})

    def never_copy(self, persona: Persona, earlier: Sequence[str]) -> tuple[str, ...]:
        """Texts for the engine's n-gram ban: the exemplar and the persona's own examples (a
        small model copies them word for word, so only in the transcript format), then
        everything said in the debate so far (`earlier`)."""
        examples: tuple[str, ...] = ()
        if self.format.name == "transcript":
            examples = exemplar_lines() + tuple(" ".join(e.split()) for e in persona.examples)
        return examples + tuple(" ".join(text.split()) for text in earlier)

    def repeatable(self) -> tuple[str, ...]:
        """What every speaker may repeat despite the n-gram ban: the motion, the names, the sides, the concerns."""
        if self._repeatable is None:
            texts = [self.run.spec.motion, self.run.spec.title or "",
                     ", ".join(p.name for p in self.run.cast.participants), STANCE_PHRASES, *all_openings()]
            for persona in self.run.cast.speakers:
                stance = resolve_stance(self.run.spec, persona)
                if stance is not None:
                    texts.append(stance[1])
            self._repeatable = tuple(" ".join(t.split()) for t in texts if t.strip())
        return self._repeatable

    # -- sides and anchored openings (debate.openings) -------------------------------------------
    def side(self, persona: Persona) -> str | None:
        """The side `persona` argues ("for" / "against"), None for the chair and the undecided."""
        if persona is self.run.cast.moderator:
            return None
        stance = resolve_stance(self.run.spec, persona)
        return stance[0] if stance is not None and stance[0] in ("for", "against") else None

    def opening(self, persona: Persona, index: int, retry: int, anchored: bool) -> str:
        """The first words of turn `index` (draw `retry`) for `persona`, "" when none: a speaker
        with no side, a town hall with `anchored_turns` off, or a request the engine sends as
        chat messages (a chat endpoint cannot be handed the start of the answer)."""
        side = self.side(persona)
        if side is None or not anchored or not self.run.spec.anchored_turns:
            return ""
        turns = self.run.transcript.turns[:index]
        earlier = [t.content for t in turns if visible(t)]
        last_turn = next((t for t in reversed(turns) if visible(t) and t.speaker != persona.name), None)
        last = None
        if last_turn is not None:
            speaker = next((p for p in self.run.cast.speakers if p.name == last_turn.speaker), None)
            last = (last_turn.speaker, self.side(speaker) if speaker is not None else None)
        return choose_opening(side, self.seeds.turn(index, retry, self.run.transcript.tree.current), earlier, last)

    def clean(self, persona: Persona, text: str, names: Sequence[str]) -> str:
        """A trimmed turn cleaned the format's way (chat: tags, narration, leaked prompt)."""
        clean_turn = getattr(self.format, "clean_turn", None)
        if clean_turn is not None:
            return str(clean_turn(persona, text, names))
        return clean_spoken(text, persona.name, names, self.format.fixed_part(persona), resample_impersonation=True)
