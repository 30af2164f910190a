"""The stance probe over HTTP: token probabilities from the real loopback server (llama-cpp-python,
OpenAI `logprobs`), llama-server's `n_probs` on its own agent slot, and the constrained one-token
choice where a server returns no probabilities (our own misbehaving server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FaultHandler, FaultServer, LlamaCppServer

from townhall.engine.local import LocalEngine
from townhall.engine.openai import OpenAIEngine
from townhall.debate.prompts import BALLOT_CHOICES

PROMPT = (
    "Minutes of the Millbrook town hall. Motion: the town should build a new bridge.\n"
    "Speakers:\n- Ada, engineer: for the motion.\n- Bram, baker: against the motion.\n"
    "Ada: A bridge would save every commuter an hour a day.\n"
    "\nThe vote:\n- Ada, engineer:"
)


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[LlamaCppServer]:
    with LlamaCppServer(model_path, n_ctx=1024, threads=2) as running:
        yield running


@pytest.mark.server
@pytest.mark.model
async def test_real_server_logprobs_agree_with_the_local_logits(server: LlamaCppServer, model_path: Path) -> None:
    engine = OpenAIEngine(server.base_url, n_ctx=1024)
    await engine.start()
    try:
        assert engine.info.stance_probe == "logprobs"
        remote = await engine.probe("ada", PROMPT, BALLOT_CHOICES)
    finally:
        await engine.aclose()
    assert remote.method == "logprobs" and engine.info.stance_probe == "logprobs"
    assert all(p > 0 for p in remote.probabilities)  # both answers were among the top tokens
    local = LocalEngine(model_path, n_ctx=1024)
    local.load_blocking()
    try:
        here = local.probe_blocking(None, PROMPT, BALLOT_CHOICES)
    finally:
        local._close_model()
    assert abs(remote.share(0) - here.share(0)) < 0.05


async def test_no_probabilities_falls_back_to_a_constrained_choice_and_says_so() -> None:
    def plain(handler: FaultHandler, body: dict) -> None:  # an OpenAI-style server that ignores logprobs
        handler.send_json(200, {"object": "text_completion", "choices": [{"index": 0, "text": " against"}]})

    with FaultServer(plain) as server:
        engine = OpenAIEngine(server.root, backoff_s=0.02)
        await engine.start()
        try:
            assert engine.info.stance_probe == "logprobs"
            first = await engine.probe("ada", PROMPT, BALLOT_CHOICES)
            assert engine.info.stance_probe == "choice"  # the header shows it from now on
            second = await engine.probe("bram", PROMPT, BALLOT_CHOICES)
        finally:
            await engine.aclose()
    assert (first.method, first.probabilities, first.share(0)) == ("choice", (0.0, 1.0), 0.0)
    assert second.method == "choice"
    bodies = server.requests
    assert bodies[0]["logprobs"] == 20 and bodies[0]["max_tokens"] == 1 and bodies[0]["_path"] == "/v1/completions"
    constrained = bodies[1]
    assert constrained["grammar"] == 'root ::= " for" | " against"'
    assert constrained["guided_choice"] == [" for", " against"]
    assert constrained["temperature"] == 0 and "logprobs" not in constrained
    assert "logprobs" not in bodies[2]  # no second try at probabilities the server never sends


async def test_llama_server_n_probs_on_the_agents_own_slot() -> None:
    def llama(handler: FaultHandler, body: dict) -> None:
        handler.send_json(200, {"content": " for", "completion_probabilities": [{
            "id": 1, "token": " for", "logprob": -0.5,
            "top_logprobs": [{"id": 1, "token": " for", "logprob": -0.5},
                             {"id": 2, "token": " against", "logprob": -1.5},
                             {"id": 3, "token": " For", "logprob": -3.0}, {"id": 4, "token": " the", "logprob": -4.0}],
        }]})

    props = {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 3, "chat_template": "", "build_info": "b1"}
    with FaultServer(llama, props=props, slots=[{"id": i, "n_ctx": 4096} for i in range(3)]) as server:
        engine = OpenAIEngine(server.root, backoff_s=0.02)
        await engine.start()
        try:
            result = await engine.probe("ada", PROMPT, BALLOT_CHOICES)
            await engine.probe("bram", PROMPT, BALLOT_CHOICES)
        finally:
            await engine.aclose()
    import math

    assert result.method == "logprobs"
    assert result.probabilities == pytest.approx((math.exp(-0.5) + math.exp(-3.0), math.exp(-1.5)))
    first, second = server.requests
    assert first["_path"] == "/completion" and first["n_probs"] == 20 and first["n_predict"] == 1
    assert (first["id_slot"], second["id_slot"]) == (0, 1) and first["cache_prompt"] is True
