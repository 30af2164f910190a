"""`townhall bench`: what per-agent KV states buy, measured on the real model in-process.

The scripted debate (`script.py`) runs three ways on one model in one process:

1. `reprefill`  - each turn sends the agent's whole prompt through llama-cpp-python's
                   `create_completion`, relying on its own longest-common-prefix reuse, as a
                   chat framework that re-sends the history does;
2. `save_state` - llama-cpp-python's `save_state()`/`load_state()` around each agent's turn;
3. `townhall`   - this project's engine (per-sequence KV states), with the stance probe
                   after every turn as the scheduler runs it: the speaker's state is still
                   resident, so only the ballot cue is evaluated. The probes are timed apart
                   from the turns (`probe/debate_pct`: their share of the debate's time; the
                   target is at most 5% at 4 agents); `total_s` and `turn_s` exclude them, so
                   the ratios against the baselines are unchanged.

A second suite, `memory`, checks the footprint of many resident agents and the restore
time at a long context.

A third, `branches` (`--regenerate`, issue 13), runs the townhall way alone and measures
what a watcher's branch ops cost: regenerating the last turn at several points of the
debate (the last one after a closing ballot has probed every agent, so the speaker's
state must come back from its prompt-end checkpoint), and an edit in the middle, after
which each agent's next turn should evaluate only from the edited line on. Regenerated
turns are greedy like the rest, so their decode compares with a normal turn's.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from townhall.bench.report import summarize_branches, summarize_local
from townhall.bench.script import ScriptedTurn, header, sampling, scripted_turns, transcript
from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.local import LocalEngine
from townhall.engine.states import common_prefix
from townhall.debate.prompts import BALLOT_CHOICES, ballot_cue

LOCAL_WAYS = ("reprefill", "save_state", "townhall")
Progress = Callable[[str], None]


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
    probes: int = 0
    probe_s: float = 0.0
    probe_tokens: int = 0  # tokens the probes evaluated

    def public(self) -> dict[str, Any]:
        keys: tuple[str, ...] = ("name", "total_s", "prefill_tokens", "generated_tokens", "turn_s", "restore_ms_max")
        data = asdict(self)
        if self.probes:
            keys += ("probes", "probe_s", "probe_tokens")
        return {k: data[k] for k in keys}


def ballot_prompt(turn: ScriptedTurn, said: str) -> str:
    """The speaker's prompt, what it just said, then the ballot cue (as the transcript format words it)."""
    return f"{turn.prompt}{said}\n{ballot_cue(turn.speaker)}"


def run_way(
    name: str, engine: LocalEngine, script: list[ScriptedTurn], tokens: int, progress: Progress
) -> WayResult:
    result = WayResult(name)
    held_prompt: dict[str, int] = {}  # tokens of each agent's previous prompt
    params = sampling(tokens)
    llm = engine.new_llama() if name != "townhall" else None
    saved: dict[str, Any] = {}
    try:
        start = time.perf_counter()
        for number, turn in enumerate(script, start=1):
            speaker, prompt = turn.speaker, turn.prompt
            prompt_tokens = engine.tokenize(prompt)
            t0 = time.perf_counter()
            if llm is None:
                pieces: list[str] = []
                stats = engine.serve_blocking(GenerationRequest(speaker, prompt, params), feed=pieces.append)
                prefill, generated = stats.prefill_tokens, stats.generated_tokens
                result.restore_ms_max = max(result.restore_ms_max, stats.restore_ms)
                elapsed = time.perf_counter() - t0
                p0 = time.perf_counter()
                probe = engine.probe_blocking(speaker, ballot_prompt(turn, "".join(pieces)), BALLOT_CHOICES)
                probe_s = time.perf_counter() - p0
                result.probes += 1
                result.probe_s += probe_s
                result.probe_tokens += probe.evaluated_tokens
                start += probe_s  # the debate's clock stops while the probe runs
                progress(f"{name}: probe after turn {number} {probe_s * 1000:.1f}ms, {probe.evaluated_tokens} tokens")
            else:
                prefill, generated = _baseline_turn(name, llm, saved, turn, prompt_tokens, params, result)
                elapsed = time.perf_counter() - t0
            result.turn_s.append(round(elapsed, 4))
            result.prefill_tokens += prefill
            result.generated_tokens += generated
            result.prefill_per_turn.append(prefill)
            result.new_per_turn.append(len(prompt_tokens) - held_prompt.get(speaker, 0))
            held_prompt[speaker] = len(prompt_tokens)
            progress(f"{name}: turn {number}/{len(script)} {elapsed:.2f}s prefill {prefill}")
        result.total_s = round(time.perf_counter() - start, 3)
    finally:
        if llm is not None:
            llm.close()
        saved.clear()
        gc.collect()
    result.restore_ms_max = round(result.restore_ms_max, 3)
    result.probe_s = round(result.probe_s, 4)
    return result


def _baseline_turn(
    name: str, llm: Any, saved: dict[str, Any], turn: ScriptedTurn, prompt_tokens: list[int],
    params: SamplingParams, result: WayResult,
) -> tuple[int, int]:
    """One turn through llama-cpp-python's high-level API; returns (prefill, generated)."""
    if name == "save_state" and turn.speaker in saved:
        r0 = time.perf_counter()
        llm.load_state(saved[turn.speaker])
        result.restore_ms_max = max(result.restore_ms_max, (time.perf_counter() - r0) * 1000)
    held = [int(t) for t in llm.input_ids[: llm.n_tokens]]
    reused = min(common_prefix(held, prompt_tokens), len(prompt_tokens) - 1)
    out = llm.create_completion(
        turn.prompt, max_tokens=params.max_tokens, temperature=params.temperature, stop=list(params.stop),
        repeat_penalty=params.repeat_penalty, seed=params.seed,
    )
    if name == "save_state":
        saved[turn.speaker] = llm.save_state()
    return len(prompt_tokens) - reused, int(out["usage"]["completion_tokens"])


def run_debate_bench(
    engine: LocalEngine,
    *,
    agents: int = 4,
    turns: int = 48,
    tokens: int = 40,
    ways: tuple[str, ...] = LOCAL_WAYS,
    progress: Progress = lambda line: None,
) -> dict[str, Any]:
    engine.load_blocking()
    script = scripted_turns(agents, turns)
    results = [run_way(way, engine, script, tokens, progress) for way in ways]
    summary = summarize_local(
        [r.public() for r in results],
        turns=turns,
        prefill_per_turn={r.name: r.prefill_per_turn for r in results},
        new_per_turn={r.name: r.new_per_turn for r in results},
    )
    summary["config"] = _config(engine, agents=agents, turns=turns, tokens=tokens)
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
    progress: Progress = lambda line: None,
) -> dict[str, Any]:
    """RSS with `agents` states of `context` tokens each, and restore time at `long_context`."""
    engine.load_blocking()
    filler = (
        "The council heard from residents about the bridge, the budget, the bus routes and the park. "
    )

    def text_of(n_tokens: int, who: str) -> str:
        words = f"{who} speaks. " + filler * (n_tokens // 10 + 10)
        ids = engine.tokenize(words, add_bos=False)[:n_tokens]
        return str(engine.llm.detokenize(ids).decode("utf-8", errors="ignore"))

    rss_loaded = _rss_mb()
    params = SamplingParams(temperature=0.0, max_tokens=4)
    for i in range(agents):
        engine.serve_blocking(GenerationRequest(f"agent{i}", text_of(context, f"Agent {i}"), params))
        progress(f"memory: agent {i + 1}/{agents} holds {engine.state_tokens(f'agent{i}')} tokens")
    rss_agents = _rss_mb()
    long_prompt = text_of(long_context, "Long")
    engine.serve_blocking(GenerationRequest("long", long_prompt, params))
    restores = []
    for _ in range(5):
        engine.serve_blocking(GenerationRequest("agent0", text_of(context, "Agent 0"), params))
        stats = engine.serve_blocking(GenerationRequest("long", long_prompt, params))
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


EDITED_LINE = "I have changed my mind: the repair plan costs less and keeps the bridge open."


def _serve(engine: LocalEngine, turn: ScriptedTurn, params: SamplingParams) -> tuple[Any, str, float]:
    pieces: list[str] = []
    t0 = time.perf_counter()
    stats = engine.serve_blocking(GenerationRequest(turn.speaker, turn.prompt, params), feed=pieces.append)
    return stats, "".join(pieces), (time.perf_counter() - t0) * 1000


def run_branch_bench(
    engine: LocalEngine,
    *,
    agents: int = 4,
    turns: int = 40,
    tokens: int = 40,
    regenerate_at: tuple[int, ...] = (10, 20, 40),
    edit_at: int = 20,
    progress: Progress = lambda line: None,
) -> dict[str, Any]:
    """The scripted debate with the stance probe after every turn, as the scheduler runs it;
    after turn N for each N in `regenerate_at` the last turn is drawn again (after the closing
    ballot when N is the last turn); then turn `edit_at` (0-based) is edited and the next
    round, one turn per agent, is said on the edited path."""
    if not 0 <= edit_at < turns:
        raise ValueError(f"the edited turn must be one of turns 0 to {turns - 1}")
    engine.load_blocking()
    script = scripted_turns(agents, turns)
    params = sampling(tokens)
    names = list(dict.fromkeys(t.speaker for t in script))  # who has spoken: each agent's header names them
    regenerated = _regenerate_along(engine, script, agents, names, regenerate_at, params, progress)
    after = _next_round_after_edit(engine, agents, names, edit_at, params, progress)
    summary = summarize_branches(regenerated, after, edit_at=edit_at)
    summary["config"] = _config(engine, agents=agents, turns=turns, tokens=tokens)
    return summary


def _regenerate_along(
    engine: LocalEngine, script: list[ScriptedTurn], agents: int, names: list[str], regenerate_at: tuple[int, ...],
    params: SamplingParams, progress: Progress,
) -> list[dict[str, Any]]:
    """Say the whole script, probing after each turn; after each turn in `regenerate_at`, say it again."""
    turns = len(script)
    regenerated: list[dict[str, Any]] = []
    for number, turn in enumerate(script, start=1):
        stats, said, ms = _serve(engine, turn, params)
        engine.probe_blocking(turn.speaker, ballot_prompt(turn, said), BALLOT_CHOICES)
        progress(f"branches: turn {number}/{turns} {ms:.0f}ms prefill {stats.prefill_tokens}")
        if number not in regenerate_at:
            continue
        ballot = number == turns
        if ballot:  # every agent probed on its full view: the speaker's state is displaced
            said_so_far = transcript(agents, turns)
            for name in names:
                engine.probe_blocking(name, f"{header(name, names)}{said_so_far}{ballot_cue(name)}", BALLOT_CHOICES)
        again, _, again_ms = _serve(engine, turn, params)
        regenerated.append({
            "turns": number, "speaker": turn.speaker, "after_ballot": ballot,
            "prompt_tokens": stats.prompt_tokens,
            "normal_prefill": stats.prefill_tokens, "normal_ms": round(ms, 1),
            "normal_decode_ms": round(_decode_ms(stats), 1),
            "prefill_tokens": again.prefill_tokens,
            "evaluated_tokens": again.prefill_tokens + again.generated_tokens,
            "generated_tokens": again.generated_tokens, "ms": round(again_ms, 1),
            "restore_ms": round(again.restore_ms, 2),
        })
        progress(f"branches: regenerated turn {number} {again_ms:.0f}ms prefill {again.prefill_tokens}")
    return regenerated


def _next_round_after_edit(
    engine: LocalEngine, agents: int, names: list[str], edit_at: int, params: SamplingParams, progress: Progress
) -> list[dict[str, Any]]:
    """Turn `edit_at` says EDITED_LINE instead; each agent then takes one turn on the edited path."""
    edited = scripted_turns(agents, edit_at + 1 + agents, {edit_at: EDITED_LINE})
    before_edit = {name: len(engine.tokenize(header(name, names) + transcript(agents, edit_at))) for name in names}
    after: list[dict[str, Any]] = []
    for turn in edited[edit_at + 1 : edit_at + 1 + agents]:
        stats, said, ms = _serve(engine, turn, params)
        engine.probe_blocking(turn.speaker, ballot_prompt(turn, said), BALLOT_CHOICES)
        after.append({
            "speaker": turn.speaker, "prompt_tokens": stats.prompt_tokens, "prefill_tokens": stats.prefill_tokens,
            "from_edit_tokens": stats.prompt_tokens - before_edit[turn.speaker], "ms": round(ms, 1),
            "restore_ms": round(stats.restore_ms, 2),
        })
        progress(f"branches: after the edit, {turn.speaker} {ms:.0f}ms prefill {stats.prefill_tokens}")
    return after


def _config(engine: LocalEngine, *, agents: int, turns: int, tokens: int) -> dict[str, Any]:
    """What a summary was measured on."""
    return {
        "agents": agents, "turns": turns, "tokens": tokens, "model": str(engine.model_path),
        "n_ctx": engine.n_ctx, "device": engine.device_description(),
    }


def _decode_ms(stats: Any) -> float:
    """The time a turn spent picking tokens after the first (its decode, without prefill)."""
    return (stats.generated_tokens - 1) / stats.decode_tps * 1000 if stats.decode_tps else 0.0
