"""`townhall bench`: what per-agent KV states buy, measured on the real model.

The same scripted debate (same persona headers, greedy decoding) runs three ways on one
model in one process:

1. `reprefill`  - each turn sends the agent's whole prompt through llama-cpp-python's
                   `create_completion`, relying on its own longest-common-prefix reuse, as a
                   chat framework that re-sends the history does;
2. `save_state` - llama-cpp-python's `save_state()`/`load_state()` around each agent's turn;
3. `townhall`   - this project's engine (per-sequence KV states).

A second suite, `memory`, checks the footprint of many resident agents and the restore
time at a long context.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.local import LocalEngine

_NAMES = ["Ada", "Bram", "Cleo", "Dev", "Esme", "Faisal", "Greta", "Hugo", "Ines", "Jonah", "Kira", "Lev"]
_ROLES = [
    "a retired civil engineer who distrusts big budgets",
    "a bakery owner worried about parking on Main Street",
    "a high-school teacher who wants safer crossings",
    "a cyclist and software developer who loves data",
    "a nurse who works night shifts at the county hospital",
    "a farmer from the edge of town",
    "a city council veteran of twenty years",
    "a student who just moved here for college",
    "a landlord with three buildings downtown",
    "a bus driver who knows every route",
    "a librarian who runs the reading club",
    "a fire chief close to retirement",
]
MOTION = "Should the town replace the old river bridge with a wider one that has bike lanes?"


@dataclass
class WayResult:
    name: str
    total_s: float = 0.0
    prefill_tokens: int = 0
    generated_tokens: int = 0
    turn_s: list[float] = field(default_factory=list)
    restore_ms_max: float = 0.0
    prefill_per_turn: list[int] = field(default_factory=list)
    new_per_turn: list[int] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        keys = ("name", "total_s", "prefill_tokens", "generated_tokens", "turn_s", "restore_ms_max")
        data = asdict(self)
        return {k: data[k] for k in keys}


class ScriptedDebate:
    """Prompt construction shared by all three ways, so each sees the same text."""

    def __init__(self, agents: int) -> None:
        if not 2 <= agents <= len(_NAMES):
            raise ValueError(f"--agents must be between 2 and {len(_NAMES)}")
        self.names = _NAMES[:agents]
        self.lines: list[str] = []

    def header(self, name: str) -> str:
        role = _ROLES[self.names.index(name)]
        others = ", ".join(n for n in self.names if n != name)
        return (
            f"You are {name}, {role}. You speak at a town hall meeting with {others}.\n"
            f"Motion: {MOTION}\nSpeak in one or two plain sentences, in your own voice.\n\n"
            f"Transcript of the meeting:\n"
        )

    def prompt(self, name: str) -> str:
        return self.header(name) + "".join(line + "\n" for line in self.lines) + f"{name}:"

    def add(self, name: str, text: str) -> None:
        self.lines.append(f"{name}: {text.strip() or '...'}")


def _sampling(tokens: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=tokens, stop=("\n",), repeat_penalty=1.1, seed=0)


def _llama(engine: LocalEngine) -> Any:
    """A second high-level Llama with the engine's exact settings, for the baselines."""
    from llama_cpp import Llama

    return Llama(
        model_path=str(engine.model_path),
        n_ctx=engine.n_ctx,
        n_batch=engine.n_batch,
        n_ubatch=engine.n_batch,
        n_threads=engine.threads,
        n_threads_batch=engine.threads,
        n_gpu_layers=engine.offloaded_layers,
        flash_attn=engine.flash_attn,
        swa_full=engine.swa_full,
        verbose=False,
    )


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def run_way(
    name: str, engine: LocalEngine, agents: int, turns: int, tokens: int, progress: Callable[[str], None]
) -> WayResult:
    debate = ScriptedDebate(agents)
    result = WayResult(name)
    seen: dict[str, int] = {}  # tokens each agent already holds (its last prompt + its reply)
    sampling = _sampling(tokens)
    llm = _llama(engine) if name != "townhall" else None
    saved: dict[str, Any] = {}
    try:
        start = time.perf_counter()
        for turn in range(turns):
            speaker = debate.names[turn % agents]
            prompt = debate.prompt(speaker)
            prompt_tokens = engine.tokenize(prompt)
            t0 = time.perf_counter()
            if name == "townhall":
                collect = _Collector()
                stats = engine.serve_blocking(GenerationRequest(speaker, prompt, sampling), feed=collect)
                text, prefill, generated = collect.text, stats.prefill_tokens, stats.generated_tokens
                result.restore_ms_max = max(result.restore_ms_max, stats.restore_ms)
            else:
                if name == "save_state" and speaker in saved:
                    r0 = time.perf_counter()
                    llm.load_state(saved[speaker])
                    result.restore_ms_max = max(result.restore_ms_max, (time.perf_counter() - r0) * 1000)
                held = [int(t) for t in llm.input_ids[: llm.n_tokens]]
                reused = min(_common(held, prompt_tokens), len(prompt_tokens) - 1)
                out = llm.create_completion(
                    prompt, max_tokens=tokens, temperature=0.0, stop=["\n"], repeat_penalty=1.1, seed=0
                )
                text = out["choices"][0]["text"]
                prefill, generated = len(prompt_tokens) - reused, out["usage"]["completion_tokens"]
                if name == "save_state":
                    saved[speaker] = llm.save_state()
            elapsed = time.perf_counter() - t0
            result.turn_s.append(round(elapsed, 4))
            result.prefill_tokens += prefill
            result.generated_tokens += generated
            result.prefill_per_turn.append(prefill)
            result.new_per_turn.append(len(prompt_tokens) - seen.get(speaker, 0))
            seen[speaker] = len(prompt_tokens) + generated
            debate.add(speaker, text)
            progress(f"{name}: turn {turn + 1}/{turns} {elapsed:.2f}s prefill {prefill}")
        result.total_s = round(time.perf_counter() - start, 3)
    finally:
        if llm is not None:
            llm.close()
        saved.clear()
        gc.collect()
    result.restore_ms_max = round(result.restore_ms_max, 3)
    return result


class _Collector:
    def __init__(self) -> None:
        self.text = ""

    def __call__(self, piece: str) -> None:
        self.text += piece


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(results: list[WayResult], turns: int) -> dict[str, Any]:
    by_name = {r.name: r for r in results}
    town = by_name["townhall"]
    summary: dict[str, Any] = {"ways": [r.public() for r in results]}
    for other in ("reprefill", "save_state"):
        if other in by_name and town.total_s > 0:
            summary[f"{other}/townhall"] = round(by_name[other].total_s / town.total_s, 2)
    if turns >= 16:
        early, late = _mean(town.turn_s[8:16]), _mean(town.turn_s[-8:])
        summary["townhall_turns_9_16_mean_s"] = round(early, 4)
        summary["townhall_last_8_mean_s"] = round(late, 4)
        summary["townhall_late_over_early"] = round(late / early, 3) if early else None
    # Turn 1 of each agent evaluates its whole header: "new" is everything then too.
    excess = [p - n for p, n in zip(town.prefill_per_turn, town.new_per_turn)]
    summary["townhall_prefill_minus_new_max"] = max(excess) if excess else 0
    return summary


def run_debate_bench(
    engine: LocalEngine,
    *,
    agents: int = 4,
    turns: int = 48,
    tokens: int = 40,
    ways: tuple[str, ...] = ("reprefill", "save_state", "townhall"),
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    engine.load_blocking()
    results = [run_way(way, engine, agents, turns, tokens, progress) for way in ways]
    summary = summarize(results, turns)
    summary["config"] = {
        "agents": agents, "turns": turns, "tokens": tokens, "model": str(engine.model_path),
        "n_ctx": engine.n_ctx, "device": engine.device_description(),
    }
    return summary


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_memory_bench(
    engine: LocalEngine, *, agents: int = 8, context: int = 2000, long_context: int = 3500,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """RSS with `agents` states of `context` tokens each, and restore time at `long_context`."""
    engine.load_blocking()
    filler = (
        "The council heard from residents about the bridge, the budget, the bus routes and the park. "
    )
    def text_of(n_tokens: int, who: str) -> str:
        words = f"{who} speaks. " + filler * (n_tokens // 10 + 10)
        ids = engine.tokenize(words, add_bos=False)[:n_tokens]
        return engine.llm.detokenize(ids).decode("utf-8", errors="ignore")

    rss_loaded = _rss_mb()
    sampling = SamplingParams(temperature=0.0, max_tokens=4)
    for i in range(agents):
        engine.serve_blocking(GenerationRequest(f"agent{i}", text_of(context, f"Agent {i}"), sampling))
        progress(f"memory: agent {i + 1}/{agents} holds {engine.state_tokens(f'agent{i}')} tokens")
    rss_agents = _rss_mb()
    long_prompt = text_of(long_context, "Long")
    engine.serve_blocking(GenerationRequest("long", long_prompt, sampling))
    restores = []
    for i in range(5):
        engine.serve_blocking(GenerationRequest("agent0", text_of(context, "Agent 0"), sampling))
        stats = engine.serve_blocking(GenerationRequest("long", long_prompt, sampling))
        restores.append(round(stats.restore_ms, 3))
        progress(f"memory: restore at {engine.state_tokens('long')} tokens took {stats.restore_ms:.1f} ms")
    return {
        "agents": agents,
        "tokens_per_agent": context,
        "rss_mb_loaded": round(rss_loaded, 1),
        "rss_mb_with_agents": round(rss_agents, 1),
        "state_mb_total": round(engine.state_bytes() / 1e6, 1),
        "long_context_tokens": engine.state_tokens("long"),
        "restore_ms": restores,
        "restore_ms_max": max(restores),
    }


def model_label(path: Path | None) -> str:
    return path.name if path else "?"
