"""Each `townhall bench` subcommand as one call: check its options, build its engine, run it.

The benchmarks themselves (`local`, `server`, `quality`, `generate`, `tui_latency`) take
plain values and know nothing of a command line; the CLI only parses options and prints.
What sits between (which engine, how much context, which option is out of range) is here,
so the subcommands and the old `bench --flag` spellings run the very same code. The error
messages name the command's flags because the command is what calls this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townhall.engine.config import EngineConfig
from townhall.errors import TownhallError

if TYPE_CHECKING:
    from townhall.bench.tui_latency import LatencyReport
    from townhall.engine.local import LocalEngine

Progress = Callable[[str], None]
MAX_CONTEXT = 32768  # the most context a bench sizes for itself; --n-ctx may ask for more


def check_ways(text: str) -> tuple[str, ...]:
    """The local ways named in `--ways`, in order; the townhall way is what the others are held against."""
    from townhall.bench.local import LOCAL_WAYS

    wanted = tuple(w.strip() for w in text.split(",") if w.strip())
    unknown = set(wanted) - set(LOCAL_WAYS)
    if unknown or "townhall" not in wanted:
        raise TownhallError(f"--ways takes reprefill, save_state and townhall (townhall required), not {text!r}")
    return wanted


def turn_counts(text: str) -> tuple[int, ...]:
    """`--at`: after which turns the branch bench regenerates the last one."""
    try:
        numbers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise TownhallError(f"--at takes turn counts separated by commas (10,20,40), not {text!r}") from None
    if not numbers or min(numbers) < 1:
        raise TownhallError(f"--at takes turn counts of at least 1, not {text!r}")
    return numbers


def local_engine(
    config: EngineConfig, *, n_ctx_given: bool, agents: int, turns: int, tokens: int, context_turns: int | None = None
) -> LocalEngine:
    """The in-process engine, its context sized for `context_turns` (else `turns`) of the scripted
    debate unless --n-ctx was given, in which case a debate that does not fit is refused."""
    from townhall.bench.script import MAX_AGENTS, MIN_AGENTS, context_needed
    from townhall.engine.local import LocalEngine

    if not MIN_AGENTS <= agents <= MAX_AGENTS:
        raise TownhallError(f"--agents must be between {MIN_AGENTS} and {MAX_AGENTS}")
    if turns < 1 or tokens < 1:
        raise TownhallError("--turns and --tokens must be at least 1")
    needed = context_needed(agents, turns if context_turns is None else context_turns, tokens)
    ctx = config.n_ctx if n_ctx_given else max(config.n_ctx, min(MAX_CONTEXT, needed))
    if needed > ctx:
        raise TownhallError(f"--turns {turns} --tokens {tokens} needs about {needed} tokens of context: raise --n-ctx")
    return LocalEngine(config.model, n_ctx=ctx, threads=config.threads, gpu_layers=config.gpu_layers)


def debate(
    config: EngineConfig, *, n_ctx_given: bool, agents: int, turns: int, tokens: int, ways: str, progress: Progress
) -> dict[str, Any]:
    """The scripted debate each way in one process, or both server ways with --backend openai."""
    if config.backend == "openai":
        return server_debate(config, agents=agents, turns=turns, tokens=tokens)
    from townhall.bench.local import run_debate_bench

    wanted = check_ways(ways)
    engine = local_engine(config, n_ctx_given=n_ctx_given, agents=agents, turns=turns, tokens=tokens)
    return run_debate_bench(engine, agents=agents, turns=turns, tokens=tokens, ways=wanted, progress=progress)


def server_debate(config: EngineConfig, *, agents: int, turns: int, tokens: int) -> dict[str, Any]:
    """resend-history against append-only through an OpenAI-compatible server."""
    from townhall.bench.report import summarize_server
    from townhall.bench.server import bench_openai

    _need_base_url(config)
    return summarize_server(bench_openai(config, agents=agents, turns=turns, max_tokens=tokens))


def memory(
    config: EngineConfig, *, n_ctx_given: bool, progress: Progress, agents: int = 4, turns: int = 48, tokens: int = 40
) -> dict[str, Any]:
    """The memory/restore suite. `agents`, `turns` and `tokens` only size the context, as for the
    default debate (the old `bench --memory` took them); the suite's own prompts fit that."""
    from townhall.bench.local import run_memory_bench

    _local_only(config, "memory")
    engine = local_engine(config, n_ctx_given=n_ctx_given, agents=agents, turns=turns, tokens=tokens)
    return run_memory_bench(engine, progress=progress)


def regenerate(
    config: EngineConfig, *, n_ctx_given: bool, agents: int, turns: int | None, tokens: int, at: str, edit_at: int,
    progress: Progress,
) -> dict[str, Any]:
    """Branch ops on the scripted debate: regenerating the last turn after each of `at`, editing
    turn `edit_at`. `turns` defaults to the last of `at`."""
    from townhall.bench.local import run_branch_bench

    _local_only(config, "regenerate")
    points = turn_counts(at)
    turns = turns or max(points)
    engine = local_engine(config, n_ctx_given=n_ctx_given, agents=agents, turns=turns, tokens=tokens,
                          context_turns=max(turns, edit_at + 1 + agents))
    if max(points) > turns:
        raise TownhallError(f"--at {max(points)} is past the debate's end: raise --turns to at least {max(points)}")
    if edit_at >= turns:
        raise TownhallError(f"--edit-at {edit_at}: the debate has turns 0 to {turns - 1}")
    return run_branch_bench(engine, agents=agents, turns=turns, tokens=tokens, regenerate_at=points, edit_at=edit_at,
                            progress=progress)


def quality(
    config: EngineConfig, *, debates: int, turns: int, transcripts: Path | None, progress: Progress
) -> dict[str, Any]:
    """The first `debates` shipped town halls, `turns` each, scored."""
    from townhall.bench.quality import load_motions, run_quality_bench
    from townhall.domain.personas import PersonaRegistry
    from townhall.engine.factory import build_engine

    specs = load_motions()
    if debates > len(specs):
        raise TownhallError(f"--debates: the shipped list has {len(specs)} town halls")
    engine = build_engine(config)

    async def go() -> dict[str, Any]:
        try:
            return await run_quality_bench(engine, PersonaRegistry.default(), specs[:debates], turns=turns,
                                           transcripts=transcripts, progress=progress)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def generate(
    config: EngineConfig, *, parallel: str | None, conversations: int | None, turns: int, tokens: int,
    n_ctx: int | None, progress: Progress,
) -> dict[str, Any]:
    """generate's own conversations at N=1 and at each N of `parallel`, each N on its own engine."""
    from townhall.bench.generate import SPEAKERS, bench_specs, run_generate_bench
    from townhall.domain.personas import PersonaRegistry
    from townhall.engine.factory import build_engine

    ns = parallel_ns(parallel, config.backend)
    if config.backend == "openai":
        _need_base_url(config)
    try:
        specs = bench_specs(conversations or max(8, *ns), turns=turns, tokens=tokens, n_ctx=n_ctx or 1024)
    except ValueError as error:
        raise TownhallError(f"--conversations: {error}") from None
    personas = PersonaRegistry.default().resolve(list(SPEAKERS))
    base = config.model_dump()
    base["n_ctx"] = n_ctx or 1024

    def make_engine(n: int) -> Any:
        return build_engine(EngineConfig.model_validate({**base, "parallel": n}))

    return asyncio.run(run_generate_bench(make_engine, specs, personas, ns, progress=progress))


def parallel_ns(text: str | None, backend: str) -> list[int]:
    """`--parallel`: the Ns to run, by default what the backend can use (a server takes fewer)."""
    wanted = text or ("1,4" if backend == "openai" else "1,4,8,16")
    try:
        ns = [int(n) for n in wanted.split(",") if n.strip()]
    except ValueError:
        raise TownhallError(f"--parallel {wanted!r}: give whole numbers separated by commas, e.g. 1,4,8") from None
    if not ns or min(ns) < 1 or max(ns) > 256:
        raise TownhallError(f"--parallel {wanted!r}: each N between 1 and 256")
    return ns


def tui_latency(config: EngineConfig) -> LatencyReport:
    """Key-to-screen latency in the headless TUI while the default town hall streams."""
    from townhall.bench.tui_latency import measure_engine_latency
    from townhall.engine.factory import build_engine

    return asyncio.run(measure_engine_latency(build_engine(config), presses=10))


def _need_base_url(config: EngineConfig) -> None:
    if not config.base_url:
        raise TownhallError("--backend openai needs --base-url URL")


def _local_only(config: EngineConfig, name: str) -> None:
    """Refuse a server for a suite that measures the in-process engine's states."""
    if config.backend == "openai":
        raise TownhallError(f"bench {name} measures the in-process engine: it takes no --backend openai")
