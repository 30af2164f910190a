"""`townhall bench --backend openai`: does prefix reuse pay off through a server?

The scripted debate of `script.py` (the one `townhall bench` runs locally) runs two
ways against one server:

- "resend-history": every turn is a one-off request (no slot, `cache_prompt: false`),
  so the server evaluates the speaker's whole prompt again, as a client that re-sends
  the history to each agent does;
- "append-only": each agent's prompt only grows at the end and the agent is pinned to
  a slot (`id_slot` + `cache_prompt: true` on llama-server; vLLM's prefix cache finds
  it alone), so only the new tail should be evaluated.

Prefill counts come from the server when it reports them (llama-server `timings`, vLLM
`cached_tokens`); otherwise they are prompt tokens and `reuse_reported` is False, so
nobody reads a saving that was never measured.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from townhall.bench.script import ScriptedTurn, sampling, scripted_turns
from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.config import EngineConfig
from townhall.engine.openai import OpenAIEngine

SERVER_WAYS = ("resend-history", "append-only")


async def _run_way(
    name: str, engine: OpenAIEngine, turns: list[ScriptedTurn], params: SamplingParams, *, pinned: bool
) -> dict[str, Any]:
    turn_s: list[float] = []
    prefill = generated = prompt = reused = 0
    ttft: list[float] = []
    reported = False
    start = time.perf_counter()
    for turn in turns:
        t0 = time.perf_counter()
        request = GenerationRequest(agent_id=turn.speaker if pinned else None, prompt=turn.prompt, sampling=params)
        gen = engine.generate(request)
        await gen.result()
        turn_s.append(round(time.perf_counter() - t0, 4))
        stats = gen.stats
        assert stats is not None
        prefill += stats.prefill_tokens
        generated += stats.generated_tokens
        prompt += stats.prompt_tokens
        reused += stats.reused_tokens
        ttft.append(stats.ttft_ms)
        reported = reported or engine.reports_reuse
    return {
        "name": name,
        "total_s": round(time.perf_counter() - start, 3),
        "prefill_tokens": prefill,
        "generated_tokens": generated,
        "turn_s": turn_s,
        "restore_ms_max": None,  # the server restores its own cache; we cannot time that
        "prompt_tokens": prompt,
        "reused_tokens": reused,
        "reuse_reported": reported,
        "ttft_ms_mean": round(sum(ttft) / len(ttft), 1) if ttft else 0.0,
        "server": engine.info.device,
        "server_kind": engine.server.kind if engine.server else "unknown",
    }


async def abench_openai(
    config: EngineConfig, *, agents: int = 4, turns: int = 12, max_tokens: int = 16, seed: int = 0
) -> list[dict[str, Any]]:
    """Run both ways through the server named by `config`; one dict per way, resend first."""
    script = scripted_turns(agents, turns)
    params = sampling(max_tokens, seed)
    results = []
    for name, pinned in zip(SERVER_WAYS, (False, True), strict=True):
        engine = OpenAIEngine.from_config(config)  # fresh per way: no client-side state carries over
        await engine.start()
        try:
            results.append(await _run_way(name, engine, script, params, pinned=pinned))
        finally:
            await engine.aclose()
    return results


def bench_openai(
    config: EngineConfig, *, agents: int = 4, turns: int = 12, max_tokens: int = 16, seed: int = 0
) -> list[dict[str, Any]]:
    """Blocking entry point for `townhall bench --backend openai --base-url URL`."""
    return asyncio.run(abench_openai(config, agents=agents, turns=turns, max_tokens=max_tokens, seed=seed))
