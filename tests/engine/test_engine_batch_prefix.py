"""Prefix sharing in the batched engine, on the real embedded model.

A request whose prompt starts like tokens another sequence holds copies those KV cells
(`llama_memory_seq_cp`) and evaluates only the rest. The copied cells are exactly the
cells an evaluation would make; what can change a greedy pick is where the prompt is cut
into batches (llama.cpp's floats depend on the batch), so each text here is compared
with a request cut at the same place: the agent's own earlier cells, sharing off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from townhall.engine.base import Generation, GenerationRequest, SamplingParams
from townhall.engine.batch import put_tokens
from townhall.engine.local import LocalEngine
from townhall.engine.states import common_prefix

pytestmark = pytest.mark.model

HEADER = (
    "Transcript of the Millbrook town hall. Motion: should the town build a new bridge?\n"
    "Ada is a retired civil engineer. Bram runs the bakery on Main Street. Cleo teaches at the school.\n"
    "Dev drives the town bus. They meet on Tuesday evenings in the old library, where the chairs are\n"
    "hard and the coffee is weak, and every resident may speak for two minutes.\n\n"
)
STOPS = ("\n",)
GREEDY = SamplingParams(temperature=0.0, max_tokens=24, stop=STOPS)
OPENERS = (
    "Bram: The bridge will bring customers.\nAda:",
    "Ada: The old bridge is safe enough.\nBram:",
    "Dev: My bus goes the long way round.\nCleo:",
    "Cleo: The children walk to school.\nDev:",
)


async def started(model_path: Path, parallel: int, *, sharing: bool = True) -> LocalEngine:
    # Plain CPU buffers: the repacked kernels round a batch of one differently from a batch of many.
    engine = LocalEngine(model_path, n_ctx=1024, parallel=parallel, cpu_repack=False)
    await engine.start()
    assert engine.batch is not None
    engine.batch.sharing = sharing
    return engine


async def run(engine: LocalEngine, *requests: GenerationRequest) -> list[Generation]:
    gens = [engine.generate(r) for r in requests]
    await asyncio.gather(*(g.result() for g in gens))
    for gen in gens:
        assert gen.error is None and gen.stats is not None
        assert gen.text.strip() and gen.stats.finish_reason in ("stop", "length")
    return gens


def shared_start(engine: LocalEngine, a: str, b: str) -> int:
    return common_prefix(engine.tokenize(a), engine.tokenize(b))


def test_copied_cells_are_the_cells_an_evaluation_makes(model_path: Path) -> None:
    """Logits after a suffix on copied cells equal those after the same suffix on the
    sequence's own cells, bit for bit, even when the donor evaluated a longer prompt."""
    import llama_cpp
    import numpy as np

    engine = LocalEngine(model_path, n_ctx=1024, parallel=4)
    engine.load_blocking()
    try:
        batch = engine.batch
        assert batch is not None
        ctx = engine.llm.ctx
        memory = llama_cpp.llama_get_memory(ctx)
        donor, prompt = engine.tokenize(HEADER + OPENERS[0]), engine.tokenize(HEADER + OPENERS[2])
        n = common_prefix(donor, prompt)
        assert n > 50

        def evaluate(seq: int, tokens: Sequence[int], pos: int) -> np.ndarray:
            b = batch.llama_batch
            b.n_tokens = put_tokens(b, 0, tokens, seq, pos)
            b.logits[len(tokens) - 1] = True
            assert llama_cpp.llama_decode(ctx, b) == 0
            return batch.core.row(len(tokens) - 1).copy()

        evaluate(0, prompt[:n], 0)
        own = evaluate(0, prompt[n:], n)
        batch.core.clear(0)
        evaluate(1, donor, 0)
        llama_cpp.llama_memory_seq_cp(memory, 1, 2, 0, n)
        batch.core.clear(1)  # the donor may go: the copy keeps the cells
        copied = evaluate(2, prompt[n:], n)
        assert np.array_equal(own, copied)
    finally:
        engine._close_model()


async def test_a_prompt_starting_like_a_resident_one_evaluates_only_the_rest(model_path: Path) -> None:
    first = GenerationRequest("Ada", HEADER + OPENERS[0], GREEDY)
    second = GenerationRequest("Bram", HEADER + OPENERS[1], GREEDY)
    engine = await started(model_path, 4)
    try:
        n = shared_start(engine, first.prompt, second.prompt)
        a, b = [(await run(engine, r))[0] for r in (first, second)]
        batch = engine.batch
        assert batch is not None and batch.prefixes.shared_tokens == n and batch.prefixes.shared_requests == 1
    finally:
        await engine.aclose()
    assert a.stats is not None and b.stats is not None
    assert a.stats.prefill_tokens == a.stats.prompt_tokens  # nothing to share yet
    assert b.stats.reused_tokens == n and b.stats.prefill_tokens == b.stats.prompt_tokens - n
    # The same cut without sharing: Bram's own cells of the first prompt, then the rest.
    reference = await started(model_path, 4, sharing=False)
    try:
        await run(reference, GenerationRequest("Bram", first.prompt, GREEDY))
        (again,) = await run(reference, second)
        assert reference.batch is not None and reference.batch.prefixes.shared_tokens == 0
        (whole,) = await run(reference, GenerationRequest("Cleo", second.prompt, GREEDY))
    finally:
        await reference.aclose()
    assert again.stats is not None and again.stats.reused_tokens == n
    assert b.text == again.text
    assert whole.stats is not None and whole.stats.prefill_tokens == whole.stats.prompt_tokens
    print(f"\nshared {n} of {b.stats.prompt_tokens} tokens; evaluated whole the text "
          f"{'is the same' if whole.text == b.text else 'differs (another batch cut)'}")


async def test_requests_arriving_together_evaluate_their_common_start_once(model_path: Path) -> None:
    requests = [GenerationRequest(f"agent{i}", HEADER + opener, GREEDY) for i, opener in enumerate(OPENERS)]
    engine = await started(model_path, 4)
    try:
        n = min(shared_start(engine, requests[0].prompt, r.prompt) for r in requests[1:])
        together = await run(engine, *requests)
        for name in [r.agent_id for r in requests]:
            assert name is not None
            engine.forget(name)
        # One at a time, each copying from the first's resident cells: the same batch cut.
        await run(engine, GenerationRequest("first", requests[0].prompt, GREEDY))
        one_by_one = [(await run(engine, GenerationRequest(f"again{i}", r.prompt, GREEDY)))[0]
                      for i, r in enumerate(requests[1:])]
    finally:
        await engine.aclose()
    prefilled = [g.stats.prefill_tokens for g in together]  # type: ignore[union-attr]
    prompts = [g.stats.prompt_tokens for g in together]  # type: ignore[union-attr]
    assert prefilled[0] == prompts[0]
    assert all(p <= total - n for p, total in zip(prefilled[1:], prompts[1:], strict=True))
    assert [g.text for g in together[1:]] == [g.text for g in one_by_one]


async def test_a_cached_prefix_outlives_the_requests_that_made_it(model_path: Path) -> None:
    """Both agents forgotten (their slots cleared): a third prompt starting alike still copies."""
    engine = await started(model_path, 2)
    try:
        n = shared_start(engine, HEADER + OPENERS[0], HEADER + OPENERS[1])
        await run(engine, GenerationRequest("Ada", HEADER + OPENERS[0], GREEDY))
        await run(engine, GenerationRequest("Bram", HEADER + OPENERS[1], GREEDY))
        engine.forget("Ada")
        engine.forget("Bram")
        batch = engine.batch
        assert batch is not None
        assert any(len(p.tokens) == n for p in batch.prefixes.entries)
        copied = shared_start(engine, HEADER + OPENERS[0], HEADER + OPENERS[2])
        (later,) = await run(engine, GenerationRequest("Cleo", HEADER + OPENERS[2], GREEDY))
        assert all(not s.tokens or s.agent == "Cleo" for s in batch.table.slots)  # no live donor left
    finally:
        await engine.aclose()
    assert later.stats is not None
    assert later.stats.prefill_tokens == later.stats.prompt_tokens - min(n, copied)


async def test_states_and_checkpoints_made_on_copied_cells_serve_later_turns(model_path: Path) -> None:
    """An agent whose first turn copied its start: its saved state, restored into another slot,
    and its prompt-end checkpoint behave as if it had evaluated everything itself."""

    async def turns(engine: LocalEngine) -> list[Generation]:
        out = [(await run(engine, GenerationRequest("Ada", HEADER + OPENERS[0], GREEDY)))[0]]
        bram = GenerationRequest("Bram", HEADER + OPENERS[1], GREEDY)
        out += await run(engine, bram)
        # Two other agents take both slots: Bram's next turn restores his saved state.
        out += await run(engine, GenerationRequest("Cleo", HEADER + OPENERS[2], GREEDY),
                         GenerationRequest("Dev", HEADER + OPENERS[3], GREEDY))
        follow = bram.prompt + out[1].text + "\nAda: Why do you say so?\nBram:"
        out += await run(engine, GenerationRequest("Bram", follow, GREEDY))
        out += await run(engine, GenerationRequest("Bram", follow, GREEDY.merged({"seed": 5})))  # a resample
        return out

    shared = await started(model_path, 2)
    try:
        with_sharing = await turns(shared)
    finally:
        await shared.aclose()
    plain = await started(model_path, 2, sharing=False)
    try:
        await run(plain, GenerationRequest("Bram", HEADER + OPENERS[0], GREEDY))  # the same batch cut
        plain.forget("Ada")
        without = await turns(plain)
    finally:
        await plain.aclose()
    bram_first, restored, resample = with_sharing[1], with_sharing[4], with_sharing[5]
    assert bram_first.stats is not None and bram_first.stats.prefill_tokens < bram_first.stats.prompt_tokens - 50
    assert restored.stats is not None and restored.stats.restore_ms > 0
    assert restored.stats.prefill_tokens < 20
    assert resample.stats is not None and resample.stats.prefill_tokens == 0
    assert resample.text == restored.text
    # Bram's turns, cut where the reference's own cells end (Cleo and Dev share only here).
    assert [with_sharing[i].text for i in (1, 4, 5)] == [without[i].text for i in (1, 4, 5)]
