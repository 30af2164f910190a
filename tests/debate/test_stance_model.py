"""The stance probe on the real embedded model: it reads a probability without generating,
costs only the cue right after a turn, and leaves every state exact (a greedy debate is
token for token the same with and without probes)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.local import LocalEngine
from townhall.domain.events import StanceMeasured
from townhall.domain.personas import Persona
from townhall.debate.prompts import BALLOT_CHOICES
from townhall.debate.scheduler import Scheduler
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import TurnKind

pytestmark = pytest.mark.model

PROMPT = (
    "Minutes of the Millbrook town hall. Motion: the town should build a new bridge.\n"
    "- Ada, engineer: for the motion.\n- Bram, baker: against the motion.\n\nAda:"
)
CUE = "\n\nThe vote:\n- Ada, engineer:"
GREEDY = SamplingParams(temperature=0.0, max_tokens=20, stop=("\n",))


def state_bytes(engine: LocalEngine, agent: str) -> bytes:
    state = engine.export_state(agent)
    assert state is not None
    return ctypes.string_at(state.data, state.size)


async def test_probe_after_a_turn_evaluates_only_the_cue_and_changes_nothing(model_path: Path) -> None:
    # Plain CPU buffers: the repacked kernels round a 65-token batch differently from the same
    # tokens evaluated in pieces, and the fresh reading below evaluates the ballot in one batch.
    engine = LocalEngine(model_path, n_ctx=1024, cpu_repack=False)
    await engine.start()
    try:
        first = await engine.generate(GenerationRequest("ada", PROMPT, GREEDY)).result()
        saved = state_bytes(engine, "ada")
        checkpoint = engine.states.checkpoints["ada"].tokens
        ballot = PROMPT + first + CUE
        resident = await engine.probe("ada", ballot, BALLOT_CHOICES)
        cue_tokens = len(engine.tokenize(CUE, add_bos=False))
        assert resident.method == "logits" and resident.evaluated_tokens <= cue_tokens + 2
        assert 0 < resident.share(0) < 1 and 0 < sum(resident.probabilities) <= 1
        assert state_bytes(engine, "ada") == saved and engine.states.checkpoints["ada"].tokens == checkpoint
        assert engine.sequential.resident == "ada"
        # The same reading evaluated from nothing: the reused state gives the same answer.
        fresh = await engine.probe(None, ballot, BALLOT_CHOICES)
        assert fresh.evaluated_tokens == fresh.prompt_tokens
        assert abs(fresh.share(0) - resident.share(0)) < 0.02
        # Another agent's probe displaced Ada, and put her state back: she is resident again.
        await engine.probe("bram", PROMPT.removesuffix("Ada:") + "Bram:" + CUE, BALLOT_CHOICES)
        assert engine.sequential.resident == "ada" and state_bytes(engine, "ada") == saved
        # Ada's next turn is what it would have been without any probe.
        follow = PROMPT + first + "\nBram: The bridge costs too much.\nAda:"
        after_probes = await engine.generate(GenerationRequest("ada", follow, GREEDY)).result()
    finally:
        await engine.aclose()
    clean = LocalEngine(model_path, n_ctx=1024, cpu_repack=False)
    await clean.start()
    try:
        assert await clean.generate(GenerationRequest("ada", PROMPT, GREEDY)).result() == first
        assert await clean.generate(GenerationRequest("ada", follow, GREEDY)).result() == after_probes
    finally:
        await clean.aclose()


def people() -> list[Persona]:
    return [
        Persona(name="Ada", title="civil engineer", bio="Ada built the old dam.", style="Precise."),
        Persona(name="Bram", title="baker", bio="Bram runs the bakery on Main Street.", style="Warm."),
        Persona(name="Cleo", title="student", bio="Cleo cycles to school.", style="Quick."),
    ]


def debate_spec(ballot: bool) -> TownHallSpec:
    return TownHallSpec.model_validate({
        "motion": "The town should build a new bridge.", "participants": ["Ada", "Bram", "Cleo"], "max_turns": 6,
        "seed": 5, "sampling": {"temperature": 0.0, "max_tokens": 24}, "ballot": ballot,
        "stances": {"Ada": {"side": "for", "concern": "traffic"}, "Bram": {"side": "against", "concern": "the cost"}},
    })


async def test_greedy_debate_is_the_same_with_and_without_probes(model_path: Path) -> None:
    texts = {}
    stances: list[StanceMeasured] = []
    for ballot in (False, True):
        engine = LocalEngine(model_path, n_ctx=2048)
        try:
            scheduler = Scheduler(engine, debate_spec(ballot), people())
            scheduler.subscribe(lambda e: stances.append(e) if isinstance(e, StanceMeasured) else None)
            await scheduler.run()
            texts[ballot] = [(t.speaker, t.content) for t in scheduler.turns if t.kind == TurnKind.AGENT]
            if ballot:
                assert scheduler.outcome is not None and scheduler.minutes
                assert scheduler.probe_cost.probes == 6 and scheduler.ballot_cost.probes == 3 == len(stances) - 6
        finally:
            await engine.aclose()
    assert len(texts[False]) == 6
    assert texts[True] == texts[False]
    assert len(stances) == 6 + 3  # one after every turn, then the closing ballot
    assert all(s.method == "logits" and 0 < s.p_for < 1 for s in stances)


def test_bench_times_the_probe_apart_from_the_turns(model_path: Path) -> None:
    from townhall.bench.local import run_debate_bench

    summary = run_debate_bench(LocalEngine(model_path, n_ctx=1024), agents=2, turns=4, tokens=4, ways=("townhall",))
    town = summary["ways"][0]
    assert town["probes"] == 4 and 0 < town["probe_s"] < town["total_s"] + town["probe_s"]
    assert 0 < summary["probe/debate_pct"] and summary["probe_ms_mean"] > 0
    assert 1 <= summary["probe_tokens_mean"] <= 40  # the cue, not the prompt
