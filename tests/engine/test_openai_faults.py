"""The openai engine against servers that fail for real: a closed port and our own
loopback HTTP server returning 500s, 4xx, malformed events and cut streams, plus a
llama-server impersonation to check slot pinning and the stats it reports."""

from __future__ import annotations

import asyncio
import time

import pytest
from servers import FaultHandler, FaultServer, completion_chunk, free_port, stream_words

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.factory import EngineConfig, build_engine
from townhall.engine.openai import OpenAIEngine
from townhall.engine.server_info import aserver_info, server_info, server_root
from townhall.engine.sse import aiter_events
from townhall.errors import BackendUnavailableError, ConfigError, ContextOverflowError, GenerationError

FAST = {"backoff_s": 0.02, "read_timeout_s": 2.0}


def request(prompt: str = "Alice: hello\nBob:", agent: str | None = "bob", **sampling: object) -> GenerationRequest:
    return GenerationRequest(agent_id=agent, prompt=prompt, sampling=SamplingParams(**sampling))


async def started(root: str, **kwargs: object) -> OpenAIEngine:
    engine = OpenAIEngine(root, **{**FAST, **kwargs})  # type: ignore[arg-type]
    await engine.start()
    return engine


def ok_words(words: list[str]):
    def behaviour(handler: FaultHandler, body: dict) -> None:
        stream_words(handler, words)

    return behaviour


# -- pure parsing ------------------------------------------------------------------
async def test_sse_groups_lines_skips_comments_and_drops_a_cut_event() -> None:
    async def lines():
        for line in [": ping", "data: {\"a\":", "data: 1}", "", "event: x", "data: two", "", "data: cut-off"]:
            yield line

    events = [e async for e in aiter_events(lines())]
    assert [(e.event, e.data) for e in events] == [("message", '{"a":\n1}'), ("x", "two")]


def test_base_url_forms_and_errors() -> None:
    assert server_root("http://127.0.0.1:8080/v1/") == "http://127.0.0.1:8080"
    assert server_root("https://h.example/proxy/v1") == "https://h.example/proxy"
    with pytest.raises(ConfigError, match="--base-url is required"):
        server_root(None)
    with pytest.raises(ConfigError, match="not an http"):
        server_root("127.0.0.1:8080")
    with pytest.raises(ConfigError, match="--base-url is required"):
        build_engine(EngineConfig(backend="openai"))


async def test_missing_api_key_variable_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TH_TEST_KEY", raising=False)
    engine = OpenAIEngine("http://127.0.0.1:9/v1", api_key_env="TH_TEST_KEY")
    with pytest.raises(ConfigError, match="TH_TEST_KEY.*not set"):
        await engine.start()


# -- connection faults ---------------------------------------------------------------
async def test_closed_port_fails_start_after_bounded_retries() -> None:
    port = free_port()  # nothing listens here
    engine = OpenAIEngine(f"http://127.0.0.1:{port}/v1", **FAST)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        await engine.start()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "connection refused" in message and "\n" not in message
    assert time.monotonic() - t0 < 5
    with pytest.raises(BackendUnavailableError, match="connection refused"):
        await aserver_info(f"http://127.0.0.1:{port}")


def test_blocking_server_info_for_the_cli() -> None:
    port = free_port()
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}.*connection refused"):
        server_info(f"http://127.0.0.1:{port}/v1")
    with FaultServer(ok_words([]), models=["m1", "m2"]) as server:
        info = server_info(server.root)
    assert info.kind == "openai-compatible" and info.models == ["m1", "m2"] and info.total_slots is None
    assert "models: m1, m2" in info.report_lines()


async def test_server_gone_after_start_fails_the_generation_through_the_handle() -> None:
    with FaultServer(ok_words(["x"])) as server:
        engine = await started(server.root)
    try:  # the server is down now: every try is refused
        gen = engine.generate(request())
        with pytest.raises(BackendUnavailableError, match="connection refused.*after 3 tries"):
            await gen.result()
        assert gen.stats is not None and gen.stats.finish_reason == "error"
        assert isinstance(gen.error, BackendUnavailableError)
    finally:
        await engine.aclose()


# -- HTTP errors ----------------------------------------------------------------------
async def test_http_500_is_retried_three_times_then_reports_the_servers_message() -> None:
    def fail(handler: FaultHandler, body: dict) -> None:
        handler.send_json(500, {"error": {"message": "model exploded\nin a second line", "type": "server_error"}})

    with FaultServer(fail) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request())
            with pytest.raises(GenerationError) as info:
                await gen.result()
        finally:
            await engine.aclose()
    assert len(server.requests) == 3
    message = str(info.value)
    assert "HTTP 500: model exploded in a second line" in message and "after 3 tries" in message
    assert "\n" not in message and not isinstance(info.value, BackendUnavailableError)


async def test_http_400_is_not_retried_and_context_errors_are_typed() -> None:
    def reject(handler: FaultHandler, body: dict) -> None:
        if body["prompt"].startswith("long"):
            handler.send_json(400, {"error": {"message": "the request exceeds the available context size"}})
        else:
            handler.send_json(400, {"detail": "unknown field 'frobnicate'"})

    with FaultServer(reject) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request("short"))
            with pytest.raises(GenerationError, match=r"HTTP 400: unknown field 'frobnicate'$"):
                await gen.result()
            gen = engine.generate(request("long prompt"))
            with pytest.raises(ContextOverflowError, match="exceeds the available context"):
                await gen.result()
        finally:
            await engine.aclose()
    assert len(server.requests) == 2  # one each: a 4xx will not change on retry


async def test_a_503_then_success_recovers_silently() -> None:
    def flaky(handler: FaultHandler, body: dict) -> None:
        if len(handler.owner.requests) == 1:
            handler.send_json(503, {"error": "loading model"})
        else:
            stream_words(handler, ["Fine", " then."])

    with FaultServer(flaky) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request())
            assert await gen.result() == "Fine then."
            assert gen.error is None and gen.stats is not None and gen.stats.finish_reason == "stop"
        finally:
            await engine.aclose()
    assert len(server.requests) == 2


# -- broken streams -------------------------------------------------------------------
async def test_malformed_event_fails_after_retries_keeping_the_text() -> None:
    def garbage(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        if len(handler.owner.requests) == 1:
            handler.event(completion_chunk("Before"))
        handler.event("{not json at all")
        handler.end_stream()

    with FaultServer(garbage) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request())
            with pytest.raises(GenerationError, match="malformed event.*not json.*after 3 tries"):
                await gen.result()
        finally:
            await engine.aclose()
    assert gen.text == "Before"
    assert len(server.requests) == 3


async def test_cut_stream_continues_from_the_text_so_far() -> None:
    def cut_once(handler: FaultHandler, body: dict) -> None:
        if len(handler.owner.requests) == 1:
            handler.start_stream()
            handler.event(completion_chunk("Hello"))
            handler.event(completion_chunk(" wor"))
            handler.cut()
        else:
            stream_words(handler, ["ld", "!"])

    with FaultServer(cut_once) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request("P:", max_tokens=10))
            assert await gen.result() == "Hello world!"
            assert gen.stats is not None and gen.stats.generated_tokens == 4
        finally:
            await engine.aclose()
    first, second = server.requests
    assert second["prompt"] == "P:Hello wor" and second["max_tokens"] == 8
    assert first["prompt"] == "P:"


async def test_stream_that_ends_without_done_or_finish_is_a_cut() -> None:
    def always_cut(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        handler.event(completion_chunk("part"))
        handler.end_stream()  # a clean end, but the turn never finished

    with FaultServer(always_cut) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request(max_tokens=50))
            with pytest.raises(GenerationError, match="ended before the turn did"):
                await gen.result()
        finally:
            await engine.aclose()
    assert gen.text == "partpartpart"  # each try continued the text; nothing said was lost
    assert [r["prompt"] for r in server.requests] == [
        "Alice: hello\nBob:", "Alice: hello\nBob:part", "Alice: hello\nBob:partpart"
    ]


async def test_chat_stream_cut_after_text_is_not_replayed() -> None:
    def cut(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        handler.event({"choices": [{"index": 0, "delta": {"content": "Partial"}, "finish_reason": None}]})
        handler.cut()

    with FaultServer(cut) as server:
        engine = await started(server.root)
        try:
            req = GenerationRequest(agent_id="a", prompt="", messages=({"role": "user", "content": "hi"},))
            gen = engine.generate(req)
            with pytest.raises(GenerationError, match="closed mid-stream"):
                await gen.result()
        finally:
            await engine.aclose()
    assert gen.text == "Partial" and len(server.requests) == 1
    assert server.requests[0]["_path"] == "/v1/chat/completions"


async def test_read_timeout_is_retried_then_reported() -> None:
    def stall(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        time.sleep(0.8)
        handler.end_stream()

    with FaultServer(stall) as server:
        engine = await started(server.root, read_timeout_s=0.3, max_tries=2)
        try:
            gen = engine.generate(request())
            with pytest.raises(GenerationError, match="read timeout.*after 2 tries"):
                await gen.result()
        finally:
            await engine.aclose()


async def test_cancel_while_the_server_is_silent_lands_quickly() -> None:
    def slow(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        handler.event(completion_chunk("One"))
        time.sleep(1.5)
        handler.end_stream()

    with FaultServer(slow) as server:
        engine = await started(server.root, read_timeout_s=10)
        try:
            gen = engine.generate(request(max_tokens=50))
            assert await gen.__anext__() == "One"
            gen.cancel()
            t0 = time.monotonic()
            await gen.result()
            assert time.monotonic() - t0 < 1.0
            assert gen.text == "One" and gen.stats is not None and gen.stats.finish_reason == "cancelled"
        finally:
            await engine.aclose()


# -- llama-server: detection, pinning, stats ---------------------------------------------
async def test_llama_server_detected_and_agents_pinned_to_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TH_TEST_KEY", "sk-secret-value")
    timings = {"prompt_n": 7, "cache_n": 30, "predicted_n": 2, "predicted_per_second": 42.5}

    def llama(handler: FaultHandler, body: dict) -> None:  # llama-server's stream shape
        handler.start_stream()
        for word in ("Yes", "."):
            handler.event({"choices": [{"index": 0, "text": word, "finish_reason": None}]})
        handler.event({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        handler.event({"choices": [], "usage": {"prompt_tokens": 37, "completion_tokens": 2}, "timings": timings})
        handler.event("[DONE]")
        handler.event(completion_chunk("MUST NOT APPEAR"))
        handler.end_stream()

    props = {"default_generation_settings": {"n_ctx": 8192}, "total_slots": 3, "chat_template": "",
             "build_info": "b9999"}
    slots = [
        {"id": 0, "n_ctx": 4096, "is_processing": False},
        {"id": 1, "n_ctx": 4096, "is_processing": True},
        {"id": 2, "n_ctx": 4096, "is_processing": False},
    ]
    with FaultServer(llama, props=props, slots=slots, models=["gemma"]) as server:
        info = await aserver_info(server.root + "/v1")
        assert info.kind == "llama-server" and info.total_slots == 3 and info.n_ctx == 4096
        assert any("slot 1: busy" in line for line in info.report_lines())
        engine = await started(server.root, api_key_env="TH_TEST_KEY")
        try:
            assert engine.info.device == f"server · {server.root}" and engine.info.n_ctx == 4096
            assert engine.info.backend == "openai" and engine.info.model_name == "gemma"
            for agent in ("ann", "ben", "cat", "ann"):
                gen = engine.generate(request(agent=agent))
                assert await gen.result() == "Yes."
            stats = gen.stats
            assert stats is not None and (stats.reused_tokens, stats.prefill_tokens, stats.prompt_tokens) == (30, 7, 37)
            assert stats.generated_tokens == 2 and stats.decode_tps == 42.5
            assert engine.state_tokens("ann") == 39 and engine.state_tokens("cat") == 0  # ann took its slot back
            assert engine.state_tokens("ben") == 39
            engine.forget("ann")
            await engine.generate(request(agent="ann")).result()
            await engine.generate(request(agent=None)).result()
        finally:
            await engine.aclose()
    bodies = server.requests
    # Agents share all slots but the last; one-offs take the last, so they never wipe an agent's cache.
    assert [b["id_slot"] for b in bodies[:5]] == [0, 1, 0, 0, 0]
    assert [b["cache_prompt"] for b in bodies] == [True, True, True, True, False, False]
    assert bodies[5]["id_slot"] == 2
    assert all(b["_auth"] == "Bearer sk-secret-value" for b in bodies)
    assert "sk-secret" not in repr(engine) and "sk-secret" not in str(engine.info)


async def test_sampling_stop_and_grammar_are_passed_through() -> None:
    with FaultServer(ok_words(["a", "b"])) as server:
        engine = await started(server.root, model="named")
        try:
            req = GenerationRequest(
                agent_id="x", prompt="P", grammar='root ::= "a"',
                sampling=SamplingParams(temperature=0.3, top_k=7, top_p=0.9, min_p=0.1, repeat_penalty=1.2,
                                        seed=11, max_tokens=5, stop=("\nX:",)),
            )
            await engine.generate(req).result()
        finally:
            await engine.aclose()
    body = server.requests[0]
    expected = {"model": "named", "temperature": 0.3, "top_k": 7, "top_p": 0.9, "min_p": 0.1, "repeat_penalty": 1.2,
                "seed": 11, "max_tokens": 5, "stop": ["\nX:"], "grammar": 'root ::= "a"', "stream": True}
    assert {k: body[k] for k in expected} == expected
    assert "id_slot" not in body  # not a llama-server


async def test_client_side_stop_cuts_even_when_the_server_does_not() -> None:
    with FaultServer(ok_words(["I agree", ".\nCarl", ": no"])) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request(stop=("\nCarl:",)))
            assert await gen.result() == "I agree."
            assert gen.stats is not None and gen.stats.finish_reason == "stop"
        finally:
            await engine.aclose()


async def test_concurrent_generations_on_a_generic_server() -> None:
    def slowish(handler: FaultHandler, body: dict) -> None:
        time.sleep(0.2)
        stream_words(handler, [body["prompt"]])

    with FaultServer(slowish) as server:
        engine = await started(server.root)
        try:
            gens = [engine.generate(request(f"p{i}", agent=f"a{i}")) for i in range(3)]
            t0 = time.monotonic()
            texts = await asyncio.gather(*(g.result() for g in gens))
            assert texts == ["p0", "p1", "p2"]
            assert time.monotonic() - t0 < 0.55  # served side by side, not one after another
        finally:
            await engine.aclose()


async def test_prefetch_warms_the_agents_slot_only_on_a_multi_slot_llama_server() -> None:
    def llama(handler: FaultHandler, body: dict) -> None:
        handler.send_json(200, {"content": "", "tokens_predicted": 0, "timings": {"prompt_n": 12}})

    props = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 3}
    with FaultServer(llama, props=props) as server:
        engine = await started(server.root)
        try:
            assert await engine.prefetch("ben", "Ben's whole prompt")
            assert await engine.prefetch("ann", "Ann's whole prompt")
        finally:
            await engine.aclose()
    assert [(b["_path"], b["id_slot"], b["n_predict"], b["cache_prompt"]) for b in server.requests] == [
        ("/completion", 0, 0, True), ("/completion", 1, 0, True)
    ]
    with FaultServer(llama) as plain:  # no slots to pin: nothing is sent
        engine = await started(plain.root)
        try:
            assert not await engine.prefetch("ben", "prompt")
        finally:
            await engine.aclose()
    assert plain.requests == []


async def test_a_cut_after_the_finish_chunk_is_not_a_fault() -> None:
    def finish_then_cut(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        handler.event(completion_chunk("Done"))
        handler.event(completion_chunk(".", "stop"))
        handler.cut()

    with FaultServer(finish_then_cut) as server:
        engine = await started(server.root)
        try:
            gen = engine.generate(request())
            assert await gen.result() == "Done."
            assert gen.error is None and gen.stats is not None and gen.stats.finish_reason == "stop"
        finally:
            await engine.aclose()
    assert len(server.requests) == 1


def test_llama_server_chatml_fallback_is_not_a_chat_template() -> None:
    """llama-server reports a built-in ChatML template for base models; auto must still pick transcript."""
    from townhall.engine.server_info import LLAMA_SERVER_FALLBACK_TEMPLATE, effective_chat_template

    assert effective_chat_template(LLAMA_SERVER_FALLBACK_TEMPLATE) is None
    assert effective_chat_template(None) is None and effective_chat_template("  ") is None
    qwen_like = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    assert effective_chat_template(qwen_like) == qwen_like
