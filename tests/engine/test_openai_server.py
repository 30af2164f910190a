"""The openai engine against a real server: llama-cpp-python's OpenAI-compatible server
serving the embedded model on loopback, started once for the module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from servers import LlamaCppServer

from townhall.bench.server import abench_openai
from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.factory import EngineConfig, build_engine
from townhall.engine.openai import OpenAIEngine
from townhall.engine.server_info import aserver_info
from townhall.errors import BackendUnavailableError, GenerationError

pytestmark = [pytest.mark.server, pytest.mark.model]

KEY_ENV = "TOWNHALL_TEST_SERVER_KEY"
KEY = "test-key-5c1e"
N_CTX = 1024


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[LlamaCppServer]:
    with LlamaCppServer(model_path, n_ctx=N_CTX, threads=2, api_key=KEY) as running:
        yield running


@pytest.fixture
async def engine(server: LlamaCppServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIEngine]:
    monkeypatch.setenv(KEY_ENV, KEY)
    config = EngineConfig(backend="openai", base_url=server.base_url, api_key_env=KEY_ENV, n_ctx=N_CTX)
    built = build_engine(config)
    assert isinstance(built, OpenAIEngine)
    await built.start()
    yield built
    await built.aclose()


def greedy(max_tokens: int, **extra: object) -> SamplingParams:
    return SamplingParams(temperature=0.0, seed=7, repeat_penalty=1.0, max_tokens=max_tokens, **extra)


async def test_what_the_server_says_about_itself(server: LlamaCppServer, engine: OpenAIEngine,
                                                 monkeypatch: pytest.MonkeyPatch, model_path: Path) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    info = await aserver_info(server.base_url, api_key_env=KEY_ENV)
    assert info.kind == "llama-cpp-python" and info.models == [str(model_path)]
    assert not info.pins_slots and info.total_slots is None
    assert engine.info.backend == "openai" and engine.info.model_name == model_path.name
    assert engine.info.device == f"server · {server.root}"  # no GPU claim: we cannot see it
    assert not engine.pins_slots


async def test_wrong_key_is_refused_without_showing_it(server: LlamaCppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "not-the-key-42")
    engine = OpenAIEngine(server.base_url, api_key_env=KEY_ENV)
    with pytest.raises(GenerationError) as info:
        await engine.start()
    assert "401" in str(info.value) and "--api-key-env" in str(info.value)
    assert "not-the-key-42" not in str(info.value) and KEY not in str(info.value)


async def test_a_few_turns_of_debate_through_the_server(engine: OpenAIEngine) -> None:
    names = ["Ada", "Ben", "Cleo"]
    header = "Transcript of a town hall meeting on the night bus.\n"
    transcript = "Ada: I want the late buses kept.\n"
    prompt_sizes: dict[str, list[int]] = {n: [] for n in names}
    for turn in range(5):
        speaker = names[(turn + 1) % len(names)]
        prompt = f"{header}{speaker} speaks next.\n\n{transcript}{speaker}:"
        sampling = SamplingParams(temperature=0.7, seed=100 + turn, max_tokens=24,
                                  stop=tuple(f"\n{n}:" for n in names) + ("\n",))
        gen = engine.generate(GenerationRequest(agent_id=speaker, prompt=prompt, sampling=sampling))
        pieces = [piece async for piece in gen]
        stats = gen.stats
        assert gen.error is None and stats is not None
        assert "".join(pieces) == gen.text and "\n" not in gen.text
        assert stats.finish_reason in ("stop", "length")
        assert 0 < stats.generated_tokens <= 24 and stats.ttft_ms > 0 and stats.total_ms >= stats.ttft_ms
        # the server does not say prompt size: the engine asks the server's tokenizer (BOS included)
        assert stats.prompt_tokens == await engine.count_tokens(prompt) + 1
        prompt_sizes[speaker].append(stats.prompt_tokens)
        transcript += f"{speaker}:{gen.text.rstrip() or ' (says nothing)'}\n"
    assert transcript.count("\n") == 6
    assert all(a < b for sizes in prompt_sizes.values() for a, b in zip(sizes, sizes[1:]))


async def test_greedy_output_and_token_counts_match_the_local_engine(engine: OpenAIEngine, model_path: Path) -> None:
    from townhall.engine.local import LocalEngine

    prompts = [
        "Transcript of a town hall meeting.\nAda: The library should open on Sundays.\nBen:",
        "The three most important things about public transport are",
    ]
    local = LocalEngine(model_path, n_ctx=N_CTX, threads=2)
    await local.start()
    try:
        for i, prompt in enumerate(prompts):
            request = GenerationRequest(agent_id=f"agent{i}", prompt=prompt, sampling=greedy(16))
            served = engine.generate(request)
            here = local.generate(request)
            assert await served.result() == await here.result()
            assert served.text.strip(), "greedy decoding produced nothing to compare"
            assert served.stats is not None and here.stats is not None
            assert served.stats.generated_tokens == here.stats.generated_tokens
            assert served.stats.prompt_tokens == here.stats.prompt_tokens
            assert await engine.count_tokens(prompt) == await local.count_tokens(prompt)
    finally:
        await local.aclose()


async def test_grammar_max_tokens_and_stop_reach_the_server(engine: OpenAIEngine) -> None:
    ask = "Question: Is the sky green? Answer (yes or no):"
    gen = engine.generate(GenerationRequest(agent_id=None, prompt=ask, sampling=greedy(8),
                                            grammar='root ::= " yes" | " no"'))
    assert (await gen.result()).strip() in ("yes", "no")

    gen = engine.generate(GenerationRequest(agent_id=None, prompt="One, two, three, four,", sampling=greedy(3)))
    await gen.result()
    assert gen.stats is not None and gen.stats.generated_tokens == 3 and gen.stats.finish_reason == "length"

    gen = engine.generate(GenerationRequest(agent_id=None, prompt="One, two, three, four,",
                                            sampling=greedy(20, stop=(" seven",))))
    text = await gen.result()
    assert "seven" not in text and "six" in text and gen.stats is not None and gen.stats.finish_reason == "stop"


async def test_cancel_mid_stream_keeps_the_text_and_the_server_serves_on(engine: OpenAIEngine) -> None:
    gen = engine.generate(GenerationRequest(agent_id="ada", prompt="Once upon a time",
                                            sampling=SamplingParams(seed=3, max_tokens=400)))
    first = await gen.__anext__()
    gen.cancel()
    await gen.result()
    assert gen.text.startswith(first) and gen.stats is not None
    assert gen.stats.finish_reason == "cancelled" and gen.stats.generated_tokens < 400
    after = engine.generate(GenerationRequest(agent_id="ben", prompt="Hello", sampling=greedy(4)))
    await after.result()
    assert after.error is None and after.stats is not None and after.stats.generated_tokens == 4


async def test_bench_runs_both_ways_through_the_server(server: LlamaCppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    config = EngineConfig(backend="openai", base_url=server.base_url, api_key_env=KEY_ENV)
    resend, append = await abench_openai(config, agents=3, turns=4, max_tokens=4)
    assert (resend["name"], append["name"]) == ("resend-history", "append-only")
    for way in (resend, append):
        assert set(way) >= {"name", "total_s", "prefill_tokens", "generated_tokens", "turn_s", "restore_ms_max"}
        assert len(way["turn_s"]) == 4 and way["total_s"] >= sum(way["turn_s"]) * 0.99
        assert way["generated_tokens"] == 16 and way["restore_ms_max"] is None
        assert way["reuse_reported"] is False  # llama-cpp-python does not report cache hits
    assert resend["prompt_tokens"] == append["prompt_tokens"] > 4 * 20  # the same prompts both ways


async def test_server_killed_mid_stream(model_path: Path) -> None:
    """A crash mid-turn: retries are refused, the turn fails in one line, its text is kept."""
    with LlamaCppServer(model_path, n_ctx=512, threads=2) as doomed:
        engine = OpenAIEngine(doomed.base_url, backoff_s=0.05)
        await engine.start()
        try:
            gen = engine.generate(GenerationRequest(agent_id="ada", prompt="Once upon a time",
                                                    sampling=SamplingParams(seed=1, max_tokens=300)))
            received = [await gen.__anext__() for _ in range(3)]
            doomed.kill()
            with pytest.raises(BackendUnavailableError) as info:
                async for piece in gen:
                    received.append(piece)
            message = str(info.value)
            assert "\n" not in message and doomed.root in message and "after 3 tries" in message
            assert gen.text == "".join(received) and len(received) >= 3
            assert gen.stats is not None and gen.stats.finish_reason == "error"
        finally:
            await engine.aclose()
        await asyncio.sleep(0)
