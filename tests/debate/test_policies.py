"""Turn policies, alone and inside the scheduler."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest
from townhall.engine.scripted import ScriptedEngine
from townhall.domain.personas import Persona
from townhall.debate.policies import (
    MentionPolicy,
    ModeratorPolicy,
    PolicyContext,
    RandomPolicy,
    RoundRobin,
    make_policy,
    mentioned,
    names_grammar,
)
from townhall.debate.scheduler import Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnKind, TurnStatus


def p(name: str, talk: float = 0.5, **extra: object) -> Persona:
    return Persona(name=name, title="t", bio="b", style="s", talkativeness=talk, **extra)


ANN, BOB, CY, MO = p("Ann", 0.9), p("Bob", 0.5), p("Cy", 0.05), p("Mo", moderator=True)


def said(*pairs: tuple[str, str]) -> list[Turn]:
    return [Turn(i, who, TurnKind.MODERATOR if who == "Mo" else TurnKind.AGENT, text, TurnStatus.COMPLETE)
            for i, (who, text) in enumerate(pairs)]


def ctx(turns: list[Turn], moderator: Persona | None = None, **kw: object) -> PolicyContext:
    return PolicyContext([ANN, BOB, CY], moderator, turns, random.Random(1), **kw)


async def test_round_robin_cycles_and_skips_excluded() -> None:
    policy = RoundRobin()
    assert await policy.choose(ctx([])) == "Ann"
    assert await policy.choose(ctx(said(("Ann", "x")))) == "Bob"
    assert await policy.choose(ctx(said(("Cy", "x")))) == "Ann"
    assert await policy.choose(ctx(said(("Ann", "x")), exclude=frozenset({"Bob"}))) == "Cy"


async def test_random_is_weighted_and_never_repeats_a_speaker() -> None:
    engine = ScriptedEngine(lambda r: f"{r.agent_id} {len(r.prompt)}")
    spec = TownHallSpec(motion="m", participants=["Ann", "Bob", "Cy"], policy="random", max_turns=300, seed=5)
    scheduler = Scheduler(engine, spec, [ANN, BOB, CY])
    await scheduler.run()
    speakers = [t.speaker for t in scheduler.turns]
    assert all(a != b for a, b in itertools.pairwise(speakers))
    counts = Counter(speakers)
    assert counts["Ann"] > counts["Bob"] > counts["Cy"] > 0


async def test_random_peek_matches_choice() -> None:
    policy, c = RandomPolicy(), ctx(said(("Ann", "x")))
    peeked = policy.peek(c)
    assert await policy.choose(c) == peeked != "Ann"


async def test_mention_hands_the_floor_to_whoever_was_addressed() -> None:
    policy = MentionPolicy()
    assert await policy.choose(ctx(said(("Ann", "I disagree, cy, and here is why.")))) == "Cy"
    assert await policy.choose(ctx(said(("Ann", "Ann thinks so. Nobody else.")))) == "Bob"  # self-mention ignored
    assert await policy.choose(ctx(said(("Bob", "Cyan is a colour.")))) == "Cy"  # no whole-word mention: round robin
    assert mentioned("Well Bob, and Ann?", ["Ann", "Bob"]) == ["Bob", "Ann"]


async def test_moderator_opens_and_speaks_between_rounds() -> None:
    asked: list[list[str]] = []

    async def ask(candidates: list[str]) -> str:
        asked.append(list(candidates))
        return candidates[-1]

    policy = ModeratorPolicy()
    assert await policy.choose(ctx([], MO, ask_model=ask)) == "Mo"
    # The moderator named Bob: Bob goes next, no model call.
    assert await policy.choose(ctx(said(("Mo", "Welcome. Bob, start us off.")), MO, ask_model=ask)) == "Bob"
    assert asked == []
    # Nobody named: the model picks among those waiting, the previous speaker excluded.
    turns = said(("Mo", "Welcome."), ("Bob", "Hi."))
    assert await policy.choose(ctx(turns, MO, ask_model=ask)) == "Cy"
    assert asked == [["Ann", "Cy"]]
    turns = said(("Mo", "Welcome."), ("Bob", "Hi."), ("Cy", "Yo."), ("Ann", "Hey."))
    assert await policy.choose(ctx(turns, MO, ask_model=ask)) == "Mo"


async def test_moderator_never_falls_back_to_the_previous_speaker() -> None:
    async def nonsense(candidates: list[str]) -> str:
        return "Bob"  # the previous speaker, not among the candidates

    turns = said(("Mo", "Welcome."), ("Bob", "Hi."))
    choice = await ModeratorPolicy().choose(ctx(turns, MO, ask_model=nonsense))
    assert choice in {"Ann", "Cy"}


async def test_moderator_policy_sends_a_grammar_over_the_waiting_names() -> None:
    def script(request: GenerationRequest) -> str:
        if request.grammar is not None:
            return " Cy"
        return f"{request.agent_id} speaks at {len(request.prompt)}."

    engine = ScriptedEngine(script)
    spec = TownHallSpec(motion="m", participants=["Ann", "Bob", "Cy"], moderator="Mo", policy="moderator", max_turns=9)
    scheduler = Scheduler(engine, spec, [MO, ANN, BOB, CY])
    await scheduler.run()
    speakers = [t.speaker for t in scheduler.turns]
    assert speakers[0] == "Mo" and speakers[4] == "Mo" and speakers[8] == "Mo"
    assert sorted(speakers[1:4]) == ["Ann", "Bob", "Cy"] and speakers[1] == "Cy"
    choices = [r for r in engine.requests if r.grammar is not None]
    assert choices and all(r.agent_id is None for r in choices)
    assert '"Ann"' in choices[0].grammar and '"Cy"' in choices[0].grammar and choices[0].grammar.startswith("root ::=")


def test_grammar_escapes_names_and_policies_are_named() -> None:
    assert names_grammar(['Dr "Q"', "Al"]) == 'root ::= " "? ("Dr \\"Q\\"" | "Al")\n'
    assert make_policy("mention").name == "mention"


@pytest.mark.model
async def test_names_grammar_constrains_the_real_model(model_path: Path) -> None:
    from townhall.engine.base import SamplingParams
    from townhall.engine.local import LocalEngine

    engine = LocalEngine(model_path, n_ctx=512)
    await engine.start()
    try:
        names = ["Walt", "Priya", "pogi"]
        for seed in (1, 2, 3):
            request = GenerationRequest(
                agent_id=None,
                prompt="Town hall.\nWalt: The bridge is old.\nMargaret: Thank you. Next I call on",
                sampling=SamplingParams(seed=seed, max_tokens=8, temperature=1.2),
                grammar=names_grammar(names),
            )
            answer = (await engine.generate(request).result()).strip()
            assert answer in names
    finally:
        await engine.aclose()

