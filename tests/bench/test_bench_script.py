"""The benchmarks' one scripted debate: both backends send exactly its prompts, each
agent's prompt only grows at the end, and one table prints local and server figures."""

from __future__ import annotations

import pytest
from servers import FaultHandler, FaultServer, completion_chunk

from townhall.bench.report import summarize_server, table_lines
from townhall.bench.script import MAX_AGENTS, context_needed, sampling, scripted_turns
from townhall.bench.server import abench_openai
from townhall.engine.config import EngineConfig


def test_each_agents_prompt_only_grows_at_the_end() -> None:
    script = scripted_turns(4, 16)
    assert [t.speaker for t in script[:5]] == ["Ada", "Bram", "Cleo", "Dev", "Ada"]
    last: dict[str, str] = {}
    for turn in script:
        assert turn.prompt.endswith(f"\n{turn.speaker}:")
        body = turn.prompt.removesuffix(f"{turn.speaker}:")
        if turn.speaker in last:
            assert body.startswith(last[turn.speaker]) and len(body) > len(last[turn.speaker])
        last[turn.speaker] = body
    assert scripted_turns(4, 16) == script  # the same debate every run


def test_bounds_sampling_and_context() -> None:
    with pytest.raises(ValueError, match="between 2 and"):
        scripted_turns(1, 4)
    with pytest.raises(ValueError):
        scripted_turns(MAX_AGENTS + 1, 4)
    params = sampling(7)
    assert (params.temperature, params.max_tokens, params.stop, params.repeat_penalty) == (0.0, 7, (), 1.0)
    longest = max(len(t.prompt) for t in scripted_turns(4, 48))
    assert context_needed(4, 48, 40) >= longest // 4 + 40


async def test_server_bench_sends_the_scripted_prompts_both_ways() -> None:
    def answer(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        handler.event(completion_chunk("x", usage={"prompt_tokens": 10, "completion_tokens": 2}))
        handler.event(completion_chunk("", "length"))
        handler.event("[DONE]")
        handler.end_stream()

    with FaultServer(answer) as server:
        config = EngineConfig(backend="openai", base_url=server.root)
        ways = await abench_openai(config, agents=3, turns=5, max_tokens=2)
    prompts = [t.prompt for t in scripted_turns(3, 5)]
    sent = [r["prompt"] for r in server.requests]
    assert sent == prompts + prompts  # resend-history, then append-only
    assert [r.get("id_slot") for r in server.requests] == [None] * 10  # no slots on a generic server
    assert [r["cache_prompt"] for r in server.requests] == [False] * 5 + [True] * 5
    assert all(r["max_tokens"] == 2 and r["temperature"] == 0.0 and "stop" not in r for r in server.requests)
    assert [w["name"] for w in ways] == ["resend-history", "append-only"]


def test_one_table_for_local_and_server_figures() -> None:
    local = {"name": "townhall", "total_s": 2.0, "prefill_tokens": 120, "generated_tokens": 40,
             "turn_s": [0.5, 1.5], "restore_ms_max": 3.25}
    server = dict(local, name="append-only", restore_ms_max=None)
    lines = table_lines({"ways": [local, server], "config": {"hidden": True}, "ratio": 1.5})
    assert lines[1].split() == ["townhall", "2.00", "120", "40", "1.000", "3.2"]
    assert lines[2].split()[-1] == "-" and lines[-1] == "ratio: 1.5"
    assert not any("hidden" in line for line in lines)
    summary = summarize_server([dict(server, name="resend-history", total_s=3.0), server])
    assert summary["resend-history/append-only"] == 1.5
