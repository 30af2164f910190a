"""Batched decoding on the real embedded model: concurrent requests share each llama_decode."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from townhall.engine.base import Generation, GenerationRequest, SamplingParams
from townhall.engine.batch import PREFIX_SEQUENCES
from townhall.engine.local import LocalEngine

pytestmark = pytest.mark.model

HEADER = (
    "Transcript of the Millbrook town hall. Motion: should the town build a new bridge?\n"
    "Ada is a retired civil engineer. Bram runs the bakery on Main Street.\n"
    "Cleo teaches at the school. Dev drives the town bus.\n\n"
)
STOPS = ("\nAda:", "\nBram:", "\nCleo:", "\nDev:", "\n\n")
GREEDY = SamplingParams(temperature=0.0, max_tokens=32, stop=STOPS)
NAMES = ("Ada", "Bram", "Cleo", "Dev")
OPENERS = {
    "Ada": "Bram: The bridge will bring customers.\nAda:",
    "Bram": "Ada: The old bridge is safe enough.\nBram:",
    "Cleo": "Dev: My bus goes the long way round.\nCleo:",
    "Dev": "Cleo: The children walk to school.\nDev:",
}


def mixed_requests() -> list[GenerationRequest]:
    """Four kinds of decoding at once: greedy, greedy with bans, sampled, a grammar one-off."""
    return [
        GenerationRequest("Ada", HEADER + OPENERS["Ada"], GREEDY),
        GenerationRequest("Bram", HEADER + OPENERS["Bram"],
                          GREEDY.merged({"no_repeat_ngram_size": 3, "min_tokens": 6}),
                          banned_texts=("The old bridge is safe enough.",)),
        GenerationRequest("Cleo", HEADER + OPENERS["Cleo"], GREEDY.merged({"temperature": 0.7, "seed": 3})),
        GenerationRequest(None, HEADER + "Next speaker:", SamplingParams(temperature=0.7, seed=3, max_tokens=8),
                          grammar='root ::= " Ada" | " Bram" | " Cleo" | " Dev"'),
    ]


async def run_all(engine: LocalEngine, requests: Sequence[GenerationRequest]) -> list[Generation]:
    gens = [engine.generate(r) for r in requests]
    await asyncio.gather(*(g.result() for g in gens))
    return gens


def assert_whole(gen: Generation) -> None:
    """Not broken: it said something, ended for a reason, and no stop string leaked."""
    assert gen.stats is not None and gen.error is None
    assert gen.text.strip() and gen.stats.generated_tokens > 0
    assert gen.stats.finish_reason in ("stop", "length")
    assert not any(stop in gen.text for stop in gen.request.sampling.stop)


async def started(model_path: Path, parallel: int, n_ctx: int = 1024) -> LocalEngine:
    # Plain CPU buffers: the repacked kernels round a batch of one differently from a batch of many.
    engine = LocalEngine(model_path, n_ctx=n_ctx, parallel=parallel, cpu_repack=False)
    await engine.start()
    return engine


async def test_concurrent_requests_are_decoded_together_and_match_one_at_a_time(model_path: Path) -> None:
    alone = await started(model_path, 1)
    try:
        sequential = [await run_all(alone, [r]) for r in mixed_requests()]
    finally:
        await alone.aclose()
    batched_engine = await started(model_path, 4)
    try:
        batched = await run_all(batched_engine, mixed_requests())
        steps = batched_engine.batch.steps  # type: ignore[union-attr]
    finally:
        await batched_engine.aclose()
    for gen in batched:
        assert_whole(gen)
    assert batched[3].text in (" Ada", " Bram", " Cleo", " Dev")
    assert batched[1].stats.generated_tokens >= 6  # type: ignore[union-attr]
    # One llama_decode served several sequences: far fewer steps than tokens evaluated.
    tokens = sum(g.stats.generated_tokens for g in batched)  # type: ignore[union-attr]
    assert steps < tokens
    # Greedy turns agree; a sampled one may not (llama.cpp's floats depend on the batch and
    # cache shape, and a seeded draw turns a last-digit change into another token).
    differ = [g.request.agent_id or "one-off" for g, (s,) in zip(batched, sequential, strict=True) if g.text != s.text]
    print(f"\n{len(differ)} of {len(batched)} requests differ between batched and alone: {differ}")
    assert [g.text for g in batched[:2]] == [s.text for (s,) in sequential[:2]]


async def test_cancelling_one_sequence_leaves_the_others_undisturbed(model_path: Path) -> None:
    requests = [GenerationRequest(n, HEADER + OPENERS[n], GREEDY) for n in NAMES]
    engine = await started(model_path, 4)
    try:
        undisturbed = await run_all(engine, requests)
        for name in NAMES:
            engine.forget(name)
        long = GenerationRequest("Dev", HEADER + OPENERS["Dev"],
                                 SamplingParams(temperature=0.8, seed=1, max_tokens=200))
        gens = [engine.generate(r) for r in requests[:3]] + [engine.generate(long)]
        got: list[str] = []
        async for piece in gens[3]:
            got.append(piece)
            if len(got) == 2:
                gens[3].cancel()
        await asyncio.gather(*(g.result() for g in gens[:3]))
        # A request cancelled while it waits for a slot is never started.
        short = SamplingParams(temperature=0.0, max_tokens=4)
        queued = [engine.generate(GenerationRequest(f"q{i}", HEADER + "Ada:", short)) for i in range(5)]
        queued[4].cancel()
        await asyncio.gather(*(g.result() for g in queued[:4]))
        await asyncio.wait_for(queued[4].result(), 5)
    finally:
        await engine.aclose()
    cancelled = gens[3].stats
    assert cancelled is not None and cancelled.finish_reason == "cancelled" and cancelled.generated_tokens < 200
    assert gens[3].text == "".join(got)
    for before, after in zip(undisturbed[:3], gens[:3], strict=True):
        assert_whole(after)
        assert after.text == before.text
    assert queued[4].stats is not None and queued[4].stats.finish_reason == "cancelled"
    assert queued[4].stats.generated_tokens == 0


async def test_state_saved_after_a_batched_turn_serves_the_next_turn_like_a_sequential_one(model_path: Path) -> None:
    """Two slots for four agents: the second round restores states into whatever slot is free."""
    engine = await started(model_path, 2)
    try:
        one = await run_all(engine, [GenerationRequest(n, HEADER + OPENERS[n], GREEDY) for n in NAMES])
        held = {}
        for gen in one:
            state = engine.export_state(str(gen.request.agent_id))
            assert state is not None
            prompt = engine.tokenize(gen.request.prompt)
            # The state holds the prompt and exactly what was said, nothing of a stop string.
            assert state.tokens[: len(prompt)] == prompt
            assert engine.llm.detokenize(state.tokens[len(prompt):]).decode() == gen.text
            held[gen.request.agent_id] = len(state.tokens)
        second = [GenerationRequest(g.request.agent_id, g.request.prompt + g.text + "\nAda: Why?\n"
                                    + str(g.request.agent_id) + ":", GREEDY) for g in one]
        two = await run_all(engine, second)
        new = {g.request.agent_id: len(engine.tokenize(g.request.prompt)) - held[g.request.agent_id] for g in two}
        restore_failures = engine.batch.restore_failures  # type: ignore[union-attr]
    finally:
        await engine.aclose()
    for gen in two:
        assert_whole(gen)
        stats = gen.stats
        assert stats is not None and stats.prefill_tokens == new[gen.request.agent_id]  # only the new tokens
        assert stats.reused_tokens == held[gen.request.agent_id] > 0
    assert sum(g.stats.restore_ms > 0 for g in two) >= 2 and restore_failures == 0  # type: ignore[union-attr]


async def test_two_requests_for_one_agent_run_one_after_the_other(model_path: Path) -> None:
    engine = await started(model_path, 4)
    try:
        prompt = HEADER + OPENERS["Ada"]
        a, b = await run_all(engine, [GenerationRequest("Ada", prompt, GREEDY)] * 2)
    finally:
        await engine.aclose()
    assert a.stats is not None and b.stats is not None
    assert a.stats.reused_tokens == 0
    # The second started from the first's saved state (its prompt-end checkpoint): a resample.
    assert b.stats.prefill_tokens == 0 and b.stats.reused_tokens == b.stats.prompt_tokens
    assert a.text == b.text and a.text.strip()


def test_resample_from_the_checkpoint_agrees_with_a_fresh_engine(model_path: Path) -> None:
    """The checkpoint row is sampled outside the context (`sampling.sample_row`) in the batched path."""
    prompt = HEADER + OPENERS["Ada"]
    rejected = SamplingParams(temperature=0.9, seed=1, max_tokens=24, stop=("\n",))
    accepted = rejected.merged({"seed": 7})
    texts = []
    for parallel, retry in ((1, False), (3, True)):
        # The batched engine runs flash attention; the sequential reference does too, so a
        # sampled draw compares the same floats.
        engine = LocalEngine(model_path, n_ctx=1024, parallel=parallel, flash_attn=True)
        engine.load_blocking()
        try:
            if retry:
                engine.serve_blocking(GenerationRequest("Ada", prompt, rejected))
            pieces: list[str] = []
            stats = engine.serve_blocking(GenerationRequest("Ada", prompt, accepted), feed=pieces.append)
            texts.append("".join(pieces))
            if retry:
                assert stats.prefill_tokens == 0 and stats.reused_tokens == stats.prompt_tokens
        finally:
            engine._close_model()
    assert texts[0] == texts[1] and texts[0].strip()


def test_parallel_sizes_the_context_and_one_keeps_the_sequential_engine(model_path: Path) -> None:
    import llama_cpp

    for parallel in (1, 4):
        engine = LocalEngine(model_path, n_ctx=512, parallel=parallel)
        engine.load_blocking()
        try:
            ctx = engine.llm.ctx
            # The slots and the probes' scratch, each with a full context, and the prefix cache.
            sequences, cells = (1, 512) if parallel == 1 else (parallel + 1 + PREFIX_SEQUENCES,
                                                               512 * (parallel + 1) + 256 * PREFIX_SEQUENCES)
            assert llama_cpp.llama_n_seq_max(ctx) == sequences
            assert llama_cpp.llama_n_ctx(ctx) == cells
            assert (engine.batch is None) == (parallel == 1)
            assert engine.info.n_ctx == 512
            assert ("|x4" in engine.states.fingerprint) == (parallel == 4)
        finally:
            engine._close_model()


def test_probe_between_steps_reads_the_agents_state_and_disturbs_nothing(model_path: Path) -> None:
    import numpy as np

    from townhall.engine.sampling import logits_row

    p1 = HEADER + OPENERS["Ada"]
    cue = "\nCleo: Ada, are you for or against the bridge?\nAda: I am"
    results = []
    for probe in (False, True):
        engine = LocalEngine(model_path, n_ctx=1024, parallel=2)
        engine.load_blocking()
        try:
            pieces: list[str] = []
            engine.serve_blocking(GenerationRequest("Ada", p1, GREEDY), feed=pieces.append)
            text1 = "".join(pieces)
            engine.serve_blocking(GenerationRequest("Bram", HEADER + OPENERS["Bram"], GREEDY))
            state = engine.export_state("Ada")
            assert state is not None
            saved = bytes(state.data)[: state.size]
            row = None
            if probe:
                tokens = engine.tokenize(p1 + text1 + cue)
                row, keep = engine.batch.probe_row("Ada", tokens)  # type: ignore[union-attr]
                assert keep == len(state.tokens)  # only the cue was evaluated
                with pytest.raises(RuntimeError, match="not available on a batched engine"):
                    engine.sequential.make_resident("Ada", tokens, None)  # type: ignore[arg-type]
            after = engine.export_state("Ada")
            assert after is state and bytes(after.data)[: after.size] == saved
            stats = engine.serve_blocking(GenerationRequest("Ada", p1 + text1 + "\nBram: Why?\nAda:", GREEDY))
            results.append((text1, stats.prefill_tokens, stats.restore_ms, row))
        finally:
            engine._close_model()
    (plain_text, plain_prefill, _, _), (text, prefill, restore_ms, row) = results
    assert text == plain_text and prefill == plain_prefill and restore_ms == 0  # Ada's slot was untouched
    reference = LocalEngine(model_path, n_ctx=1024, flash_attn=True)  # as the batched engine attends
    reference.load_blocking()
    try:
        reference.llm.eval(reference.tokenize(p1 + text + cue))
        expected = logits_row(reference.llm.ctx, -1, reference.llm.n_vocab()).astype(np.float64)
    finally:
        reference._close_model()
    assert row is not None and int(np.argmax(row)) == int(np.argmax(expected))
    top = np.argsort(expected)[-5:]
    assert np.allclose(row[top], expected[top], atol=0.5), (row[top], expected[top])
