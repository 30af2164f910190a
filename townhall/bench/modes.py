"""Each `townhall bench` subcommand as one call: check its options, build its engine, run it.

The benchmarks themselves (`local`, `server`, `quality`, `generate`, `tui_latency`) take
plain values and know nothing of a command line; the CLI only parses options and prints.
What sits between (which engine, how much context, which option is out of range) is here,
so the subcommands and the old `bench --flag` spellings run the very same code. The error
messages name the command's flags because the command is what calls this module.
"""

from __future__ import annotations

import asyncio
import time
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
    config: EngineConfig, *, debates: int, turns: int, transcripts: Path | None, progress: Progress,
    judge: bool = False, judge_model: str | None = None, motions: Path | None = None,
) -> dict[str, Any]:
    """The first `debates` town halls of `motions` (the shipped tuning set by default), `turns`
    each, scored; with `judge`, then read by the faithfulness judge once the debating engine is
    closed (two models never run at once on the bench)."""
    from townhall.bench.quality import load_motions, run_quality_bench, strip_private
    from townhall.domain.personas import PersonaRegistry
    from townhall.engine.factory import build_engine

    specs = load_motions(motions)
    if debates > len(specs):
        raise TownhallError(f"--debates: {motions or 'the shipped list'} has {len(specs)} town halls")
    judge_path = _judge_path(judge_model) if judge else None  # a missing judge is refused before the debates
    engine = build_engine(config)

    async def go() -> dict[str, Any]:
        try:
            summary = await run_quality_bench(engine, PersonaRegistry.default(), specs[:debates], turns=turns,
                                              transcripts=transcripts, progress=progress)
        finally:
            await engine.aclose()
        summary["model"] = engine.info.model_name
        if judge_path is not None:
            await _judge(summary, judge_path, progress)
            if transcripts is not None:
                _write_judged(summary, transcripts)
        return strip_private(summary)

    return asyncio.run(go())


def _judge_path(explicit: str | None) -> Path:
    from townhall.bench.judge_model import judge_model_path

    return judge_model_path(explicit)


async def _judge(summary: dict[str, Any], path: Path, progress: Progress) -> None:
    """The judge's agreement with the hand labels first: figures from a judge below the bar are refused."""
    from townhall.bench.judge import Judge, check_agreement, load_labels
    from townhall.bench.quality import judge_debates
    from townhall.engine.local import LocalEngine

    engine = LocalEngine(path, n_ctx=2048)
    try:
        judge = Judge(engine)
        await judge.start()
        agreement = await check_agreement(judge, load_labels())
        summary["judge"] = {"model": engine.info.model_name, **agreement.figures()}
        progress(f"judge {engine.info.model_name}: agreement {agreement.overall:.1%} with the hand labels")
        if not agreement.is_measure:
            raise TownhallError(f"the judge {engine.info.model_name} agrees with only {agreement.overall:.0%} of the "
                                "hand labels (a measure needs 85%): pass a larger --judge-model")
        await judge_debates(judge, summary, progress)
    finally:
        await engine.aclose()


def judge_check(judge_model: str | None) -> dict[str, Any]:
    """The judge against the hand labels alone, with each disagreement."""
    from townhall.bench.judge import Judge, check_agreement, load_labels
    from townhall.engine.local import LocalEngine

    path = _judge_path(judge_model)

    async def go() -> dict[str, Any]:
        engine = LocalEngine(path, n_ctx=2048)
        try:
            judge = Judge(engine)
            await judge.start()
            started = time.perf_counter()
            labels = load_labels()
            agreement = await check_agreement(judge, labels)
            seconds = (time.perf_counter() - started) / len(labels)
            return {"model": engine.info.model_name, **agreement.figures(), "s_per_statement": round(seconds, 2),
                    "misses": list(agreement.misses)}
        finally:
            await engine.aclose()

    return asyncio.run(go())


def judge_lines(summary: dict[str, Any]) -> list[str]:
    verdict = "a measure" if summary["is_measure"] else f"NOT a measure (needs {summary['min_agreement']:.0%})"
    return [f"judge {summary['model']}: {summary['statements']} hand-labelled statements, "
            f"{summary['s_per_statement']} s each",
            f"agreement {summary['agreement']:.1%}: side {summary['side']:.1%}, reason {summary['reason']:.1%}, "
            f"on topic {summary['relevant']:.1%}; {verdict}",
            *(f"  {miss}" for miss in summary["misses"])]


def _write_judged(summary: dict[str, Any], transcripts: Path) -> None:
    """Beside each transcript, its turns as the judge read them."""
    from townhall.bench.quality import judged_text

    for number, debate in enumerate(summary["debates"], start=1):
        (transcripts / f"{number:02d}-judged.txt").write_text(judged_text(debate), encoding="utf-8")


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
