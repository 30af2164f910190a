"""`townhall bench --backend openai`: does prefix reuse pay off through a server?

The same scripted debate runs two ways against one server:

- "resend-history": every turn is a one-off request (no slot, `cache_prompt: false`),
  so the server evaluates the speaker's whole prompt again, as a client that re-sends
  the history to each agent does;
- "append-only": each agent's prompt only grows at the end and the agent is pinned to
  a slot (`id_slot` + `cache_prompt: true` on llama-server; vLLM's prefix cache finds
  it alone), so only the new tail should be evaluated.

The transcript lines are scripted, not generated, so both ways send byte-identical
prompts whatever the model says; the model still generates `max_tokens` per turn at
temperature 0 so decode time is part of the figure. Prefill counts come from the
server when it reports them (llama-server `timings`, vLLM `cached_tokens`); otherwise
they are prompt tokens and `reuse_reported` is False, so nobody reads a saving that
was never measured.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.factory import EngineConfig
from townhall.engine.openai import OpenAIEngine

_PEOPLE = (
    ("Ada", "a retired bus driver who wants the night routes kept"),
    ("Ben", "a shop owner worried about parking on Main Street"),
    ("Cleo", "a nurse who cycles to the hospital before dawn"),
    ("Dev", "a student who cannot afford a car"),
    ("Edna", "a treasurer who reads every line of the budget"),
    ("Finn", "a father of three who drives to two schools"),
)
_LINES = (
    "I think we should keep the buses running after midnight.",
    "The shops on Main Street lose customers when there is nowhere to park.",
    "Half the night shift at the hospital has no other way to get to work.",
    "A monthly pass costs more than my books do.",
    "The budget has room for one of these things, not all of them.",
    "If the buses stop, the traffic at the schools only gets worse.",
    "Could we run fewer buses but keep the late ones?",
    "Parking meters on Main Street would pay for some of it.",
    "Nobody has asked the drivers what the schedule should be.",
    "We tried a late route once and nobody measured who used it.",
    "Let us count the riders for a month before we vote.",
    "I can live with that if the count is public.",
)
MOTION = "The town should keep the night bus routes and pay for them with parking fees."


@dataclass(frozen=True)
class _Turn:
    speaker: str
    prompt: str


def scripted_turns(agents: int, turns: int) -> list[_Turn]:
    """The debate as prompts: each speaker's own header first, then the transcript so far."""
    people = _PEOPLE[: max(2, min(agents, len(_PEOPLE)))]
    headers = {
        name: (
            f"Transcript of a town hall meeting.\nMotion: {MOTION}\n"
            f"{name} is {who}. {name} speaks plainly, in one or two sentences.\n\n"
        )
        for name, who in people
    }
    transcript = ""
    result: list[_Turn] = []
    for index in range(turns):
        name = people[index % len(people)][0]
        result.append(_Turn(name, headers[name] + transcript + f"{name}:"))
        transcript += f"{name}: {_LINES[index % len(_LINES)]}\n"
    return result


async def _run_way(
    name: str, engine: OpenAIEngine, turns: list[_Turn], sampling: SamplingParams, *, pinned: bool
) -> dict[str, Any]:
    turn_s: list[float] = []
    prefill = generated = prompt = reused = 0
    ttft: list[float] = []
    reported = False
    start = time.perf_counter()
    for turn in turns:
        t0 = time.perf_counter()
        gen = engine.generate(GenerationRequest(agent_id=turn.speaker if pinned else None, prompt=turn.prompt, sampling=sampling))
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
    sampling = SamplingParams(temperature=0.0, seed=seed, max_tokens=max_tokens, repeat_penalty=1.0, stop=())
    results = []
    for name, pinned in (("resend-history", False), ("append-only", True)):
        engine = OpenAIEngine.from_config(config)  # fresh per way: no client-side state carries over
        await engine.start()
        try:
            results.append(await _run_way(name, engine, script, sampling, pinned=pinned))
        finally:
            await engine.aclose()
    return results


def bench_openai(
    config: EngineConfig, *, agents: int = 4, turns: int = 12, max_tokens: int = 16, seed: int = 0
) -> list[dict[str, Any]]:
    """Blocking entry point for `townhall bench --backend openai --base-url URL`."""
    return asyncio.run(abench_openai(config, agents=agents, turns=turns, max_tokens=max_tokens, seed=seed))
