"""`townhall doctor` and `townhall bench`: the truth about the model and its speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from townhall.cli.options import EngineFlags, JsonOpt, engine_options
from townhall.errors import TownhallError


def local_report(model: str | None, n_ctx: int, threads: int | None, gpu_layers: int) -> dict[str, Any]:
    """Everything `doctor` says about a local model, read from the file and the loaded build."""
    import llama_cpp

    from townhall.engine.local import LocalEngine
    from townhall.engine.model_file import embedded_sha256, resolve_model_path, sha256_file, validate_model_file
    from townhall.engine.system import gpu_offload_supported, physical_cores

    path = resolve_model_path(model)
    header = validate_model_file(path)
    engine = LocalEngine(path, n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers)
    engine.load_blocking()
    try:
        sha = sha256_file(path)
        return {
            "backend": "local",
            "model_path": str(path),
            "model_size_bytes": path.stat().st_size,
            "model_sha256": sha,
            "embedded_model": sha == embedded_sha256(),
            "model_name": header.name,
            "architecture": header.architecture,
            "trained_context": header.context_length,
            "layers": header.block_count,
            "has_chat_template": header.chat_template is not None,
            "prompt_format": "chat" if header.chat_template else "transcript",
            "llama_cpp_python_version": llama_cpp.__version__,
            "llama_cpp_version": llama_cpp.llama_version().decode(),
            "n_ctx": n_ctx,
            "threads": engine.threads,
            "physical_cores": physical_cores(),
            "gpu_offload_supported": gpu_offload_supported(),
            "gpu_layers_requested": gpu_layers,
            "layers_offloaded": engine.offloaded_layers,
            "layers_total": engine.total_layers,
            "device": engine.device_description(),
            "eos_markers": list(engine.info.eos_markers),
            "cpu_features": llama_cpp.llama_print_system_info().decode().strip(),
        }
    finally:
        engine._close_model()


def _print_report(report: dict[str, Any]) -> None:
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, (list, dict)):
            value = json.dumps(value)
        typer.echo(f"{key.replace('_', ' '):<{width}}  {value}")


@engine_options
def doctor(
    engine_flags: EngineFlags,
    as_json: JsonOpt = False,
) -> None:
    """Report the model, the build and the hardware actually doing the work."""
    config = engine_flags.config()
    if config.backend == "openai":
        from townhall.engine.server_info import server_info

        if not config.base_url:
            raise TownhallError("--backend openai needs --base-url URL")
        info = server_info(config.base_url, api_key_env=config.api_key_env)
        if as_json:
            typer.echo(json.dumps(info.as_dict(), indent=2))
        else:
            for line in info.report_lines():
                typer.echo(line)
        return
    report = local_report(config.model, config.n_ctx, config.threads, config.gpu_layers)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)


def _ways_table(summary: dict[str, Any]) -> None:
    from townhall.bench.report import table_lines

    for line in table_lines(summary):
        typer.echo(line)


@engine_options
def bench(
    engine_flags: EngineFlags,
    agents: Annotated[int, typer.Option("--agents", help="Agents taking turns.")] = 4,
    turns: Annotated[
        Optional[int], typer.Option("--turns", help="Turns in the scripted debate (48), or per town hall with --quality (24) or --generate (6).")
    ] = None,
    tokens: Annotated[int, typer.Option("--tokens", help="Tokens generated per turn at most.")] = 40,
    ways: Annotated[str, typer.Option("--ways", help="Comma-separated: reprefill,save_state,townhall.")] = (
        "reprefill,save_state,townhall"
    ),
    memory: Annotated[bool, typer.Option("--memory", help="Run the memory/restore suite instead.")] = False,
    tui_latency: Annotated[
        bool, typer.Option("--tui-latency", help="Measure key-to-screen latency in the TUI during generation.")
    ] = False,
    quality: Annotated[
        bool, typer.Option("--quality", help="Score the debate itself on the shipped town halls (clean, echo, words...).")
    ] = False,
    debates: Annotated[int, typer.Option("--debates", min=1, help="With --quality: how many town halls.")] = 6,
    transcripts: Annotated[
        Optional[Path], typer.Option("--transcripts", help="With --quality: write each debate's text into this folder.")
    ] = None,
    baseline_s: Annotated[
        Optional[float], typer.Option("--baseline-s", help="With --quality: seconds per turn to hold speed against.")
    ] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Run the same conversations one at a time and N at a time (generate --parallel).")
    ] = False,
    parallel: Annotated[
        Optional[str], typer.Option("--parallel", help="With --generate: the Ns, comma-separated (1,4,8,16; a server 1,4).")
    ] = None,
    conversations: Annotated[
        Optional[int], typer.Option("--conversations", min=1, help="With --generate: how many (default: the largest N, at least 8).")
    ] = None,
    regenerate: Annotated[
        bool, typer.Option("--regenerate", help="Measure branch ops: regenerating the last turn at --at, editing turn --edit-at.")
    ] = False,
    regenerate_at: Annotated[
        str, typer.Option("--at", help="With --regenerate: after which turns to regenerate the last one (comma-separated).")
    ] = "10,20,40",
    edit_at: Annotated[int, typer.Option("--edit-at", min=0, help="With --regenerate: the turn (#N, from 0) to edit.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Run the same scripted debate three ways and print what per-agent KV states save."""
    config = engine_flags.config()
    if generate:
        _generate(config, parallel=parallel, conversations=conversations, turns=turns or 6, tokens=tokens,
                  n_ctx=engine_flags.n_ctx, as_json=as_json)
        return
    if quality:
        _quality(config, debates=debates, turns=turns or 24, transcripts=transcripts, baseline_s=baseline_s, as_json=as_json)
        return
    turns = turns or (max(_turn_numbers(regenerate_at)) if regenerate else 48)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if tui_latency:
        import asyncio

        from townhall.engine.factory import build_engine
        from townhall.bench.tui_latency import measure_engine_latency

        report = asyncio.run(measure_engine_latency(build_engine(config), presses=10))
        typer.echo(json.dumps(report.as_dict()) if as_json else report.line())
        return
    if config.backend == "openai":
        from townhall.bench.report import summarize_server
        from townhall.bench.server import bench_openai

        if not config.base_url:
            raise TownhallError("--backend openai needs --base-url URL")
        summary = summarize_server(bench_openai(config, agents=agents, turns=turns, max_tokens=tokens))
        if as_json:
            typer.echo(json.dumps(summary))
        else:
            _ways_table(summary)
        return
    from townhall.bench.local import LOCAL_WAYS, run_debate_bench, run_memory_bench
    from townhall.bench.script import MAX_AGENTS, MIN_AGENTS, context_needed
    from townhall.engine.local import LocalEngine

    wanted = tuple(w.strip() for w in ways.split(",") if w.strip())
    unknown = set(wanted) - set(LOCAL_WAYS)
    if unknown or "townhall" not in wanted:
        raise TownhallError(f"--ways takes reprefill, save_state and townhall (townhall required), not {ways!r}")
    if not MIN_AGENTS <= agents <= MAX_AGENTS:
        raise TownhallError(f"--agents must be between {MIN_AGENTS} and {MAX_AGENTS}")
    if turns < 1 or tokens < 1:
        raise TownhallError("--turns and --tokens must be at least 1")
    n_ctx_needed = context_needed(agents, max(turns, edit_at + 1 + agents) if regenerate else turns, tokens)
    ctx = config.n_ctx if engine_flags.n_ctx is not None else max(config.n_ctx, min(32768, n_ctx_needed))
    if n_ctx_needed > ctx:
        raise TownhallError(f"--turns {turns} --tokens {tokens} needs about {n_ctx_needed} tokens of context: raise --n-ctx")
    engine = LocalEngine(config.model, n_ctx=ctx, threads=config.threads, gpu_layers=config.gpu_layers)
    if regenerate:
        _branches(engine, agents=agents, turns=turns, tokens=tokens, at=_turn_numbers(regenerate_at), edit_at=edit_at,
                  progress=progress, as_json=as_json)
        return
    if memory:
        result = run_memory_bench(engine, progress=progress)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            _print_report(result)
        return
    summary = run_debate_bench(engine, agents=agents, turns=turns, tokens=tokens, ways=wanted, progress=progress)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _ways_table(summary)


def _turn_numbers(text: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise TownhallError(f"--at takes turn counts separated by commas (10,20,40), not {text!r}") from None
    if not numbers or min(numbers) < 1:
        raise TownhallError(f"--at takes turn counts of at least 1, not {text!r}")
    return numbers


def _branches(engine: Any, *, agents: int, turns: int, tokens: int, at: tuple[int, ...], edit_at: int,
              progress: Any, as_json: bool) -> None:
    from townhall.bench.local import run_branch_bench
    from townhall.bench.report import branch_lines

    if max(at) > turns:
        raise TownhallError(f"--at {max(at)} is past the debate's end: raise --turns to at least {max(at)}")
    if edit_at >= turns:
        raise TownhallError(f"--edit-at {edit_at}: the debate has turns 0 to {turns - 1}")
    summary = run_branch_bench(engine, agents=agents, turns=turns, tokens=tokens, regenerate_at=at, edit_at=edit_at,
                               progress=progress)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    for line in branch_lines(summary):
        typer.echo(line)


def _quality(config: Any, *, debates: int, turns: int, transcripts: Path | None, baseline_s: float | None, as_json: bool) -> None:
    import asyncio

    from townhall.bench.quality import load_motions, report_lines, run_quality_bench
    from townhall.engine.factory import build_engine
    from townhall.domain.personas import PersonaRegistry

    specs = load_motions()
    if debates > len(specs):
        raise TownhallError(f"--debates: the shipped list has {len(specs)} town halls")
    engine = build_engine(config)
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if as_json else (lambda line: None)

    async def go() -> dict[str, Any]:
        try:
            return await run_quality_bench(
                engine, PersonaRegistry.default(), specs[:debates], turns=turns, transcripts=transcripts, progress=progress
            )
        finally:
            await engine.aclose()

    summary = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for line in report_lines(summary, baseline_s):
            typer.echo(line)


def _generate(config: Any, *, parallel: str | None, conversations: int | None, turns: int, tokens: int,
              n_ctx: int | None, as_json: bool) -> None:
    import asyncio

    from townhall.bench.generate import SPEAKERS, bench_specs, report_lines, run_generate_bench
    from townhall.engine.factory import EngineConfig, build_engine
    from townhall.domain.personas import PersonaRegistry

    wanted = parallel or ("1,4" if config.backend == "openai" else "1,4,8,16")
    try:
        ns = [int(n) for n in wanted.split(",") if n.strip()]
    except ValueError:
        raise TownhallError(f"--parallel {wanted!r}: give whole numbers separated by commas, e.g. 1,4,8") from None
    if not ns or min(ns) < 1 or max(ns) > 256:
        raise TownhallError(f"--parallel {wanted!r}: each N between 1 and 256")
    if config.backend == "openai" and not config.base_url:
        raise TownhallError("--backend openai needs --base-url URL")
    try:
        specs = bench_specs(conversations or max(8, *ns), turns=turns, tokens=tokens, n_ctx=n_ctx or 1024)
    except ValueError as error:
        raise TownhallError(f"--conversations: {error}") from None
    personas = PersonaRegistry.default().resolve(list(SPEAKERS))
    base = config.model_dump()
    base["n_ctx"] = n_ctx or 1024

    def make_engine(n: int) -> Any:
        return build_engine(EngineConfig.model_validate({**base, "parallel": n}))

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    summary = asyncio.run(run_generate_bench(make_engine, specs, personas, ns, progress=progress))
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for line in report_lines(summary):
            typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.command("bench")(bench)

