"""`townhall doctor` and `townhall bench`: the truth about the model and its speed.

`bench` is a group, one subcommand per benchmark, each with only its own options; the
work behind each is one call in `townhall.bench.modes`. Plain `townhall bench` runs the
debate bench, and the mode flags from before the subcommands still pick their mode.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, assert_never

import typer

from townhall.cli.options import EngineFlags, JsonOpt, engine_options
from townhall.errors import TownhallError


def local_report(model: str | None, n_ctx: int, threads: int | None, gpu_layers: int) -> dict[str, Any]:
    """Everything `doctor` says about a local model, read from the file and the loaded build."""
    import llama_cpp

    from townhall.engine.local import LocalEngine
    from townhall.engine.model_file import embedded_sha256, sha256_file, validate_model_file
    from townhall.engine.model_names import resolve_model_path
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


def _pair_lines(report: dict[str, Any]) -> list[str]:
    """One `key  value` line per entry, the values lined up (doctor, bench memory)."""
    width = max(len(k) for k in report)
    return [f"{key.replace('_', ' '):<{width}}  {json.dumps(v) if isinstance(v, (list, dict)) else v}"
            for key, v in report.items()]


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
    from townhall.cli.model_cmds import discovery_report, model_lines
    from townhall.engine.discovery import discover

    discovery = discover()
    found = discovery.models()
    if as_json:
        typer.echo(json.dumps({**report, "models_found": discovery_report(discovery, found)}, indent=2))
    else:
        _echo_lines(_pair_lines(report))
        typer.echo("models looked for in:")
        _echo_lines(f"  {place.describe()}" for place in discovery.places)
        typer.echo("models found:")
        _echo_lines(f"  {line}" for line in model_lines(found))


def _echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        typer.echo(line)


def _show(summary: dict[str, Any], as_json: bool, lines: Callable[[dict[str, Any]], Iterable[str]]) -> None:
    """A bench's summary as one JSON object, or as its table."""
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _echo_lines(lines(summary))


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _quiet(line: str) -> None:
    """Progress nobody asked for (bench quality prints its per-debate lines in the table instead)."""


# Options more than one bench takes.
AgentsOpt = Annotated[int, typer.Option("--agents", help="Agents taking turns.")]
TokensOpt = Annotated[int, typer.Option("--tokens", help="Tokens generated per turn at most.")]
WaysOpt = Annotated[str, typer.Option("--ways", help="Comma-separated: reprefill,save_state,townhall.")]
AtOpt = Annotated[str, typer.Option("--at", help="After which turns to regenerate the last one (comma-separated).")]
EditAtOpt = Annotated[int, typer.Option("--edit-at", min=0, help="The turn (#N, from 0) to edit.")]
DebatesOpt = Annotated[int, typer.Option("--debates", min=1, help="How many of the shipped town halls.")]
TranscriptsOpt = Annotated[
    Optional[Path], typer.Option("--transcripts", help="Write each debate's text into this folder.")
]
BaselineOpt = Annotated[Optional[float], typer.Option("--baseline-s", help="Seconds per turn to hold speed against.")]
ParallelOpt = Annotated[
    Optional[str], typer.Option("--parallel", help="The Ns, comma-separated (default 1,4,8,16; a server 1,4).")
]
ConversationsOpt = Annotated[
    Optional[int], typer.Option("--conversations", min=1, help="How many (default: the largest N, at least 8).")
]
WAYS = "reprefill,save_state,townhall"
AT = "10,20,40"

bench_app = typer.Typer(
    name="bench", invoke_without_command=True, no_args_is_help=False, pretty_exceptions_enable=False,
    add_completion=False,
)


def _old(flag: str, **checks: Any) -> Any:
    """An option of `townhall bench` from before the subcommands: still read (and checked), no longer shown."""
    return typer.Option(flag, hidden=True, **checks)


@bench_app.callback()
@engine_options
def bench(
    ctx: typer.Context,
    engine_flags: EngineFlags,
    agents: AgentsOpt = 4,
    turns: Annotated[Optional[int], typer.Option("--turns", help="Turns in the scripted debate (48).")] = None,
    tokens: TokensOpt = 40,
    ways: WaysOpt = WAYS,
    as_json: JsonOpt = False,
    memory: Annotated[bool, _old("--memory")] = False,
    tui_latency: Annotated[bool, _old("--tui-latency")] = False,
    quality: Annotated[bool, _old("--quality")] = False,
    debates: Annotated[int, _old("--debates", min=1)] = 6,
    transcripts: Annotated[Optional[Path], _old("--transcripts")] = None,
    baseline_s: Annotated[Optional[float], _old("--baseline-s")] = None,
    generate: Annotated[bool, _old("--generate")] = False,
    parallel: Annotated[Optional[str], _old("--parallel")] = None,
    conversations: Annotated[Optional[int], _old("--conversations", min=1)] = None,
    regenerate: Annotated[bool, _old("--regenerate")] = False,
    regenerate_at: Annotated[str, _old("--at")] = AT,
    edit_at: Annotated[int, _old("--edit-at", min=0)] = 20,
) -> None:
    """Measure what per-agent KV states, batching and the debate itself are worth.

    With no subcommand, runs `debate` with the options given here.

    The old flags (--quality, --generate, --regenerate, --memory, --tui-latency) still work for one release.
    """
    if ctx.invoked_subcommand is not None:
        _nothing_before(ctx)
        return
    old = _OldFlags(memory=memory, tui_latency=tui_latency, quality=quality, debates=debates, transcripts=transcripts,
                    baseline_s=baseline_s, generate=generate, parallel=parallel, conversations=conversations,
                    regenerate=regenerate, at=regenerate_at, edit_at=edit_at)
    _run_old_form(engine_flags, old, agents=agents, turns=turns, tokens=tokens, ways=ways, as_json=as_json)


def _nothing_before(ctx: typer.Context) -> None:
    """Options before a subcommand's name belong to the default bench: refuse them rather than drop them."""
    # Typer carries its own copy of click, so its ParameterSource is told by name.
    given = [name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
    if given:
        name = ctx.invoked_subcommand
        raise TownhallError(f"bench {name}: put its options after the subcommand (townhall bench {name} --help)")


_OldMode = Literal["generate", "quality", "tui-latency", "regenerate", "memory"]  # each names its subcommand


@dataclass(frozen=True)
class _OldFlags:
    """The mode flags `townhall bench` took before it had subcommands, and their options."""

    memory: bool
    tui_latency: bool
    quality: bool
    debates: int
    transcripts: Path | None
    baseline_s: float | None
    generate: bool
    parallel: str | None
    conversations: int | None
    regenerate: bool
    at: str
    edit_at: int

    def mode(self, backend: str) -> _OldMode | None:
        """The subcommand the flags pick, in the old order (a server ran the debate whatever followed)."""
        if self.generate:
            return "generate"
        if self.quality:
            return "quality"
        if self.tui_latency:
            return "tui-latency"
        if backend == "openai":
            return None
        if self.regenerate:
            return "regenerate"
        return "memory" if self.memory else None


def _run_old_form(
    engine_flags: EngineFlags, old: _OldFlags, *, agents: int, turns: int | None, tokens: int, ways: str, as_json: bool
) -> None:
    """Plain `townhall bench [--flag]`: the debate bench, or the mode an old flag names (with a note)."""
    from townhall.bench import modes

    mode = old.mode(engine_flags.config().backend)
    if mode is not None:
        typer.echo(f"townhall: `bench --{mode}` is deprecated and goes in the next release: "
                   f"use `townhall bench {mode}`", err=True)
    match mode:
        case "generate":
            _generate(engine_flags, parallel=old.parallel, conversations=old.conversations, turns=turns or 6,
                      tokens=tokens, as_json=as_json)
        case "quality":
            _quality(engine_flags, debates=old.debates, turns=turns or 24, transcripts=old.transcripts,
                     baseline_s=old.baseline_s, as_json=as_json)
        case "tui-latency":
            _tui_latency(engine_flags, as_json=as_json)
        case "regenerate":
            modes.check_ways(ways)
            _regenerate(engine_flags, agents=agents, turns=turns, tokens=tokens, at=old.at, edit_at=old.edit_at,
                        as_json=as_json)
        case "memory":
            modes.check_ways(ways)
            _memory(engine_flags, agents=agents, turns=turns or 48, tokens=tokens, as_json=as_json)
        case None:
            default = max(modes.turn_counts(old.at)) if old.regenerate else 48  # --regenerate with a server
            _debate(engine_flags, agents=agents, turns=turns or default, tokens=tokens, ways=ways, as_json=as_json)
        case _:
            assert_never(mode)


@bench_app.command("debate")
@engine_options
def bench_debate(
    engine_flags: EngineFlags,
    agents: AgentsOpt = 4,
    turns: Annotated[int, typer.Option("--turns", help="Turns in the scripted debate.")] = 48,
    tokens: TokensOpt = 40,
    ways: WaysOpt = WAYS,
    as_json: JsonOpt = False,
) -> None:
    """The scripted debate three ways in one process: what per-agent KV states save.

    The ways: reprefill, save_state and townhall. With --backend openai: resend-history against append-only.
    """
    _debate(engine_flags, agents=agents, turns=turns, tokens=tokens, ways=ways, as_json=as_json)


def _debate(engine_flags: EngineFlags, *, agents: int, turns: int, tokens: int, ways: str, as_json: bool) -> None:
    from townhall.bench import modes
    from townhall.bench.report import table_lines

    summary = modes.debate(engine_flags.config(), n_ctx_given=engine_flags.n_ctx is not None, agents=agents,
                           turns=turns, tokens=tokens, ways=ways, progress=_progress)
    _show(summary, as_json, table_lines)


@bench_app.command("memory")
@engine_options
def bench_memory(engine_flags: EngineFlags, as_json: JsonOpt = False) -> None:
    """RSS with 8 agents of 2,000 tokens each, and the restore time at 3,500 tokens."""
    _memory(engine_flags, agents=4, turns=48, tokens=40, as_json=as_json)


def _memory(engine_flags: EngineFlags, *, agents: int, turns: int, tokens: int, as_json: bool) -> None:
    from townhall.bench import modes

    result = modes.memory(engine_flags.config(), n_ctx_given=engine_flags.n_ctx is not None, agents=agents,
                          turns=turns, tokens=tokens, progress=_progress)
    _show(result, as_json, _pair_lines)


@bench_app.command("regenerate")
@engine_options
def bench_regenerate(
    engine_flags: EngineFlags,
    agents: AgentsOpt = 4,
    turns: Annotated[
        Optional[int], typer.Option("--turns", help="Turns in the scripted debate (default: the last of --at).")
    ] = None,
    tokens: TokensOpt = 40,
    regenerate_at: AtOpt = AT,
    edit_at: EditAtOpt = 20,
    as_json: JsonOpt = False,
) -> None:
    """Branch ops: regenerating the last turn after each of --at, editing turn --edit-at."""
    _regenerate(engine_flags, agents=agents, turns=turns, tokens=tokens, at=regenerate_at, edit_at=edit_at,
                as_json=as_json)


def _regenerate(
    engine_flags: EngineFlags, *, agents: int, turns: int | None, tokens: int, at: str, edit_at: int, as_json: bool
) -> None:
    from townhall.bench import modes
    from townhall.bench.report import branch_lines

    summary = modes.regenerate(engine_flags.config(), n_ctx_given=engine_flags.n_ctx is not None, agents=agents,
                               turns=turns, tokens=tokens, at=at, edit_at=edit_at, progress=_progress)
    _show(summary, as_json, branch_lines)


@bench_app.command("quality")
@engine_options
def bench_quality(
    engine_flags: EngineFlags,
    debates: DebatesOpt = 6,
    turns: Annotated[int, typer.Option("--turns", help="Turns per town hall.")] = 24,
    transcripts: TranscriptsOpt = None,
    baseline_s: BaselineOpt = None,
    judge: Annotated[bool, typer.Option(
        "--judge/--no-judge", help="Also measure faithfulness with the judge model (`make judge`).")] = False,
    judge_model: Annotated[Optional[str], typer.Option(
        "--judge-model", help="An instruct GGUF to judge with instead of the packaged one (implies --judge).")] = None,
    motions: Annotated[Optional[Path], typer.Option(
        "--motions", help="A town-hall list instead of the shipped tuning set (e.g. held_out_motions.toml).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score the debate itself on the shipped town halls (clean, echo, words; with --judge, faithfulness)."""
    _quality(engine_flags, debates=debates, turns=turns, transcripts=transcripts, baseline_s=baseline_s,
             as_json=as_json, judge=judge or judge_model is not None, judge_model=judge_model, motions=motions)


def _quality(
    engine_flags: EngineFlags, *, debates: int, turns: int, transcripts: Path | None, baseline_s: float | None,
    as_json: bool, judge: bool = False, judge_model: str | None = None, motions: Path | None = None,
) -> None:
    from townhall.bench import modes
    from townhall.bench.quality import report_lines

    summary = modes.quality(engine_flags.config(), debates=debates, turns=turns, transcripts=transcripts,
                            progress=_progress if as_json else _quiet, judge=judge, judge_model=judge_model,
                            motions=motions)
    _show(summary, as_json, lambda s: report_lines(s, baseline_s))


@bench_app.command("judge")
def bench_judge(
    judge_model: Annotated[Optional[str], typer.Option(
        "--judge-model", help="An instruct GGUF to check instead of the packaged judge.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the faithfulness judge against the shipped hand-labelled statements."""
    from townhall.bench import modes

    summary = modes.judge_check(judge_model)
    _show(summary, as_json, modes.judge_lines)


@bench_app.command("generate")
@engine_options
def bench_generate(
    engine_flags: EngineFlags,
    parallel: ParallelOpt = None,
    conversations: ConversationsOpt = None,
    turns: Annotated[int, typer.Option("--turns", help="Turns per conversation.")] = 6,
    tokens: TokensOpt = 40,
    as_json: JsonOpt = False,
) -> None:
    """Run generate's conversations one at a time and N at a time (generate --parallel)."""
    _generate(engine_flags, parallel=parallel, conversations=conversations, turns=turns, tokens=tokens,
              as_json=as_json)


def _generate(
    engine_flags: EngineFlags, *, parallel: str | None, conversations: int | None, turns: int, tokens: int,
    as_json: bool,
) -> None:
    from townhall.bench import modes
    from townhall.bench.generate import report_lines

    summary = modes.generate(engine_flags.config(), parallel=parallel, conversations=conversations, turns=turns,
                             tokens=tokens, n_ctx=engine_flags.n_ctx, progress=_progress)
    _show(summary, as_json, report_lines)


@bench_app.command("tui-latency")
@engine_options
def bench_tui_latency(engine_flags: EngineFlags, as_json: JsonOpt = False) -> None:
    """Key-to-screen latency in the TUI while a turn streams."""
    _tui_latency(engine_flags, as_json=as_json)


def _tui_latency(engine_flags: EngineFlags, *, as_json: bool) -> None:
    from townhall.bench import modes

    report = modes.tui_latency(engine_flags.config())
    typer.echo(json.dumps(report.as_dict()) if as_json else report.line())


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.add_typer(bench_app, name="bench")
