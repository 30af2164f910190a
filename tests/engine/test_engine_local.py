"""The local engine on the real embedded model: streaming, states, cancel, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.decoding import ngram_overlap
from townhall.engine.local import LocalEngine
from townhall.errors import ContextOverflowError, ModelFileError

pytestmark = pytest.mark.model

HEADER = (
    "Transcript of the Millbrook town hall. Motion: should the town build a new bridge?\n"
    "Ada is a retired civil engineer. Bram runs the bakery on Main Street.\n\n"
)
GREEDY = SamplingParams(temperature=0.0, max_tokens=30, stop=("\nAda:", "\nBram:", "\n\n"))


@pytest.fixture(scope="module")
def engine(model_path: Path) -> LocalEngine:
    eng = LocalEngine(model_path, n_ctx=2048)
    eng.load_blocking()
    yield eng
    eng._close_model()


def serve(engine: LocalEngine, agent: str | None, prompt: str, sampling: SamplingParams = GREEDY):
    pieces: list[str] = []
    stats = engine.serve_blocking(GenerationRequest(agent, prompt, sampling), feed=pieces.append)
    return "".join(pieces), stats


def test_reports_the_device_this_build_really_uses(engine: LocalEngine) -> None:
    import llama_cpp

    info = engine.info
    assert info.backend == "local" and info.model_name == "Gemma 3 270m"
    if llama_cpp.llama_supports_gpu_offload():  # asked for every layer (-1): a GPU build takes them all
        total = engine.total_layers
        assert total > 1 and engine.offloaded_layers == total
        assert info.device == f"GPU · {total}/{total} layers offloaded"
    else:
        assert engine.offloaded_layers == 0 and info.device.startswith("CPU · ")
        assert "GPU" not in info.device
    assert "<end_of_turn>" in info.eos_markers


def test_second_turn_evaluates_only_new_tokens(engine: LocalEngine) -> None:
    engine.forget("Ada")
    p1 = HEADER + "Bram: The bridge will bring customers.\nAda:"
    text1, s1 = serve(engine, "Ada", p1)
    assert text1.strip() and s1.reused_tokens == 0 and s1.prefill_tokens == s1.prompt_tokens
    assert s1.generated_tokens > 0 and s1.decode_tps > 0 and s1.ttft_ms > 0
    serve(engine, "Bram", HEADER + "Bram:")  # another agent takes the context
    addition = "\nBram: But who pays for it?\nAda:"
    p2 = p1 + text1 + addition
    _, s2 = serve(engine, "Ada", p2)
    new_tokens = s2.prompt_tokens - engine.tokenize(p1 + text1).__len__()
    assert s2.restore_ms > 0, "Ada's state must have been restored, not kept"
    assert s2.prefill_tokens <= new_tokens + 2
    assert s2.reused_tokens >= s1.prompt_tokens


def test_greedy_continuation_after_restore_equals_without(model_path: Path) -> None:
    """Same operations on two engines; only one evicts Ada and restores her state."""
    p1 = HEADER + "Bram: The bridge will bring customers.\nAda:"
    sampling = SamplingParams(temperature=0.0, max_tokens=40, stop=("\nBram:",))
    outputs = []
    for evict in (False, True):
        eng = LocalEngine(model_path, n_ctx=2048)
        eng.load_blocking()
        try:
            text1, _ = serve(eng, "Ada", p1, sampling)
            if evict:
                serve(eng, "Bram", HEADER + "Ada: Hello.\nBram:", sampling)
            text2, s2 = serve(eng, "Ada", p1 + text1 + "\nBram: Go on.\nAda:", sampling)
            outputs.append((text1, text2, s2.restore_ms > 0, s2.reused_tokens))
        finally:
            eng._close_model()
    (a1, a2, restored_a, reused_a), (b1, b2, restored_b, reused_b) = outputs
    assert not restored_a and restored_b
    assert reused_a == reused_b
    assert a1 == b1 and a2 == b2 and a2.strip()


def test_divergence_inside_own_turn_uses_prompt_checkpoint(engine: LocalEngine) -> None:
    engine.forget("Ada")
    p1 = HEADER + "Bram: Tell us about the old bridge.\nAda:"
    text1, s1 = serve(engine, "Ada", p1, SamplingParams(temperature=0.0, max_tokens=24))
    serve(engine, "Bram", HEADER + "Bram:")
    trimmed = " It is old."  # the scheduler kept less than was generated
    _, s2 = serve(engine, "Ada", p1 + trimmed + "\nBram: Fine.\nAda:")
    assert s2.restore_ms > 0
    assert s2.reused_tokens == s1.prompt_tokens  # back to the end of the last prompt, not to zero


def test_stop_strings_and_eos_end_the_turn(engine: LocalEngine) -> None:
    prompt = HEADER + "Bram: I say yes.\nAda: I say no.\nBram: Yes!\nAda: No!\nBram:"
    text, stats = serve(engine, None, prompt, SamplingParams(temperature=0.0, max_tokens=60, stop=("\nAda:",)))
    assert "\nAda:" not in text and "Ada:" not in text.split("\n")[-1][:4]
    assert stats.finish_reason in ("stop", "length")


def test_context_full_stops_generation_without_crashing(model_path: Path) -> None:
    eng = LocalEngine(model_path, n_ctx=128)
    eng.load_blocking()
    try:
        prompt = HEADER + "Ada: " + "and the bridge " * 22
        n = len(eng.tokenize(prompt))
        assert 100 < n < 128
        text, stats = serve(eng, "Ada", prompt, SamplingParams(temperature=0.0, max_tokens=200))
        assert stats.finish_reason in ("context", "stop")
        assert stats.prompt_tokens + stats.generated_tokens <= 128
        with pytest.raises(ContextOverflowError, match="does not fit the 128-token context"):
            serve(eng, "Ada", prompt * 2)
        again, _ = serve(eng, "Bram", HEADER + "Bram:", SamplingParams(temperature=0.0, max_tokens=5))
        assert isinstance(again, str)
    finally:
        eng._close_model()


def test_state_for_another_context_size_is_never_reused(model_path: Path, engine: LocalEngine) -> None:
    prompt = HEADER + "Bram: Hello.\nAda:"
    serve(engine, "Ada", prompt)
    state = engine.export_state("Ada")
    assert state is not None and state.nbytes > 0
    other = LocalEngine(model_path, n_ctx=1024)
    other.load_blocking()
    try:
        assert other.import_state("Ada", state) is False
        _, stats = serve(other, "Ada", prompt)
        assert stats.reused_tokens == 0 and stats.restore_ms == 0
    finally:
        other._close_model()
    assert engine.import_state("Ada", state) is True


def test_grammar_constrains_the_choice(engine: LocalEngine) -> None:
    grammar = 'root ::= " Ada" | " Bram" | " Cleo"'
    free, _ = serve(engine, None, HEADER + "Next speaker:", SamplingParams(temperature=0.7, seed=3, max_tokens=8))
    assert free not in (" Ada", " Bram", " Cleo")  # unconstrained, the model rambles
    request = GenerationRequest(None, HEADER + "Next speaker:", SamplingParams(temperature=0.7, seed=3, max_tokens=8),
                                grammar=grammar)
    pieces: list[str] = []
    engine.serve_blocking(request, feed=pieces.append)
    assert "".join(pieces) in (" Ada", " Bram", " Cleo")


def test_split_utf8_characters_are_streamed_whole(engine: LocalEngine) -> None:
    prompt = "Emoji parade: 🎉🎈🎂🎁🎊🎉🎈🎂🎁🎊🎉🎈🎂🎁🎊🎉🎈"
    pieces: list[str] = []
    stats = engine.serve_blocking(
        GenerationRequest(None, prompt, SamplingParams(temperature=0.0, max_tokens=24)), feed=pieces.append
    )
    text = "".join(pieces)
    assert stats.generated_tokens > 0
    assert "\ufffd" not in text
    assert any(ord(ch) > 0xFFFF for ch in text), f"expected emoji in {text!r}"
    for piece in pieces:  # every streamed piece is valid text on its own
        piece.encode("utf-8")


async def test_async_stream_cancel_and_engine_stays_usable(model_path: Path) -> None:
    eng = LocalEngine(model_path, n_ctx=1024)
    await eng.start()
    try:
        long = SamplingParams(temperature=0.8, seed=1, max_tokens=200)
        gen = eng.generate(GenerationRequest("Ada", HEADER + "Ada:", long))
        got = []
        async for piece in gen:
            got.append(piece)
            if len(got) == 3:
                gen.cancel()
        assert gen.stats is not None and gen.stats.finish_reason == "cancelled"
        assert gen.stats.generated_tokens < 200 and gen.text == "".join(got)
        # A queued request behind it is served normally, and one cancelled in the queue is skipped.
        follow = eng.generate(
            GenerationRequest("Bram", HEADER + "Bram:", SamplingParams(temperature=0.0, max_tokens=6)))
        skipped = eng.generate(GenerationRequest("Cleo", HEADER + "Cleo:", long))
        skipped.cancel()
        text = await follow.result()
        assert text and follow.stats.finish_reason in ("stop", "length")
        await asyncio.wait_for(skipped.result(), 5)
        assert skipped.stats.finish_reason == "cancelled" and skipped.stats.generated_tokens == 0
        assert await eng.count_tokens("hello world") == 2
    finally:
        await eng.aclose()


async def test_requests_from_many_agents_queue_on_one_model(model_path: Path) -> None:
    eng = LocalEngine(model_path, n_ctx=1024)
    await eng.start()
    try:
        sampling = SamplingParams(temperature=0.0, max_tokens=8, stop=("\n",))
        gens = [eng.generate(GenerationRequest(name, HEADER + f"{name}:", sampling))
                for name in ("Ada", "Bram", "Cleo")]
        texts = await asyncio.gather(*(g.result() for g in gens))
        assert all(isinstance(t, str) for t in texts)
        assert all(eng.state_tokens(n) > 0 for n in ("Ada", "Bram", "Cleo"))
    finally:
        await eng.aclose()


async def test_missing_model_fails_with_one_line(tmp_path: Path) -> None:
    eng = LocalEngine(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError) as info:
        await eng.start()
    assert str(tmp_path / "nope.gguf") in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("penalty", [1.0, 1.3, 0.9])
def test_fast_greedy_picks_exactly_what_llama_cpp_sampler_picks(model_path: Path, penalty: float) -> None:
    """The numpy greedy path must be token-for-token llama.cpp's penalties + greedy chain."""
    prompt = HEADER + "Bram: Say it again and again: bridge bridge bridge.\nAda:"
    sampling = SamplingParams(temperature=0.0, max_tokens=48, repeat_penalty=penalty)
    texts = []
    for fast in (True, False):
        eng = LocalEngine(model_path, n_ctx=1024, fast_greedy=fast)
        eng.load_blocking()
        try:
            text, stats = serve(eng, None, prompt, sampling)
            texts.append((text, stats.generated_tokens))
        finally:
            eng._close_model()
    assert texts[0] == texts[1] and texts[0][1] > 10


# -- anti-echo decoding and resampling (issue 11) -------------------------------------
ECHO_LINE = "The bridge will bring customers to every shop on Main Street."
ECHO_PROMPT = HEADER + f"Bram: {ECHO_LINE}\nAda: {ECHO_LINE}\nBram: {ECHO_LINE}\nAda:"


def turn_tokens(engine: LocalEngine, agent: str, prompt: str) -> list[int]:
    """The tokens the agent's saved state holds past its prompt: exactly what it said."""
    state = engine.export_state(agent)
    assert state is not None
    return state.tokens[len(engine.tokenize(prompt)):]


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_ngram_ban_keeps_the_banned_ngrams_out_of_the_turn(engine: LocalEngine, temperature: float) -> None:
    banned = engine.core.constraints.bans.tokens_of(ECHO_LINE)
    banned_grams = {tuple(banned[i : i + 3]) for i in range(len(banned) - 2)}
    sampling = SamplingParams(temperature=temperature, seed=5, max_tokens=30, stop=("\n",))
    serve(engine, "Ada", ECHO_PROMPT, sampling)
    echoed = ngram_overlap(turn_tokens(engine, "Ada", ECHO_PROMPT), [banned], 3)
    assert echoed >= 5, "without the ban the model repeats the line (the prompt invites it)"
    request = GenerationRequest("Ada", ECHO_PROMPT, sampling.merged({"no_repeat_ngram_size": 3}),
                                banned_texts=(ECHO_LINE,))
    pieces: list[str] = []
    stats = engine.serve_blocking(request, feed=pieces.append)
    said = turn_tokens(engine, "Ada", ECHO_PROMPT)
    assert stats.generated_tokens >= 3 and "".join(pieces).strip()
    grams = [tuple(said[i : i + 3]) for i in range(len(said) - 2)]
    classes = engine.token_classes()
    # A banned (or, within the turn, repeated) 3-gram may only end in a word's later piece,
    # which is never banned; none ends in a word start.
    assert all(not classes.bannable(g[2]) for g in grams if g in banned_grams)
    assert all(not classes.bannable(g[2]) for i, g in enumerate(grams) if g in grams[:i])
    assert ngram_overlap(said, [banned], 3) <= 1 < echoed


def test_ngram_ban_is_the_same_on_the_fast_greedy_path_and_the_sampler_chain(model_path: Path) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=40, no_repeat_ngram_size=2, min_tokens=8)
    texts = []
    for fast in (True, False):
        eng = LocalEngine(model_path, n_ctx=1024, fast_greedy=fast)
        eng.load_blocking()
        try:
            request = GenerationRequest("Ada", ECHO_PROMPT, sampling, banned_texts=(ECHO_LINE, "Bram runs the bakery."))
            pieces: list[str] = []
            stats = eng.serve_blocking(request, feed=pieces.append)
            texts.append(("".join(pieces), stats.generated_tokens, turn_tokens(eng, "Ada", ECHO_PROMPT)))
        finally:
            eng._close_model()
    assert texts[0] == texts[1] and texts[0][1] >= 8


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_min_tokens_holds_off_the_newline_and_the_end(engine: LocalEngine, temperature: float) -> None:
    prompt = HEADER + "Bram: Yes.\nAda: No.\nBram: Yes.\nAda: No.\nBram: Yes.\nAda:"
    sampling = SamplingParams(temperature=temperature, seed=2, max_tokens=40, stop=("\n",))
    short, s_short = serve(engine, None, prompt, sampling)
    assert s_short.generated_tokens < 6 and s_short.finish_reason == "stop", short
    long, s_long = serve(engine, None, prompt, sampling.merged({"min_tokens": 12}))
    assert s_long.generated_tokens >= 12 and "\n" not in long
    assert s_long.finish_reason in ("stop", "length")


def test_resample_from_the_prompt_end_evaluates_nothing_and_leaves_an_exact_state(model_path: Path) -> None:
    """Ada's first try is rejected and resampled with a new seed; an engine that only ever
    saw the accepted try must agree on it and on Ada's next (greedy) turn."""
    p1 = HEADER + "Bram: The bridge will bring customers.\nAda:"
    rejected = SamplingParams(temperature=0.9, seed=1, max_tokens=24, stop=("\n",))
    accepted = rejected.merged({"seed": 7})
    greedy = SamplingParams(temperature=0.0, max_tokens=30, stop=("\n",))
    runs = []
    for retry in ("none", "at once", "after another agent"):
        eng = LocalEngine(model_path, n_ctx=2048)
        eng.load_blocking()
        try:
            retry_stats = None
            if retry != "none":
                serve(eng, "Ada", p1, rejected)
                if retry == "after another agent":
                    serve(eng, "Bram", HEADER + "Ada: Hello.\nBram:", greedy)
            text1, s1 = serve(eng, "Ada", p1, accepted)
            if retry != "none":
                retry_stats = s1
            text2, _ = serve(eng, "Ada", p1 + text1 + "\nBram: Why?\nAda:", greedy)
            runs.append((text1, text2, retry_stats))
        finally:
            eng._close_model()
    (fresh1, fresh2, _), *retried = runs
    for text1, text2, stats in retried:
        assert stats is not None and stats.prefill_tokens == 0  # the checkpoint kept the prompt's logits
        assert stats.reused_tokens == stats.prompt_tokens
        assert (text1, text2) == (fresh1, fresh2) and fresh2.strip()
    assert retried[1][2].restore_ms > 0  # the second retry came back from the checkpoint


def test_dry_sampler_runs_and_breaks_the_echo(engine: LocalEngine) -> None:
    assert engine.info.decoding.dry and engine.info.decoding.ngram_ban
    banned = engine.core.constraints.bans.tokens_of(ECHO_LINE)
    sampling = SamplingParams(temperature=0.0, max_tokens=30, stop=("\n",))
    serve(engine, "Ada", ECHO_PROMPT, sampling)
    plain = ngram_overlap(turn_tokens(engine, "Ada", ECHO_PROMPT), [banned], 3)
    serve(engine, "Ada", ECHO_PROMPT, sampling.merged({"dry_multiplier": 0.8}))
    dry = ngram_overlap(turn_tokens(engine, "Ada", ECHO_PROMPT), [banned], 3)
    assert dry < plain
