"""`townhall generate CONFIG.toml`: conversations in bulk from a topic list (seed 003's chat-builder).

Everything that can be wrong with the input (the config, the personas, the output
file) is checked before the model loads. `--parallel N` keeps N conversations in
flight (default: `townhall.generate.parallel`'s rule). Ctrl+C stops cleanly: the
conversations in progress are kept in the store as stopped and never reach the
output, every finished one is written; a second Ctrl+C quits at once (the output is
still whole, as every write is one fsynced append).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from townhall.cli.options import DbOpt, EngineFlags, engine_options
from townhall.errors import ConfigError, TownhallError
from townhall.generate.config import MAX_PARALLEL

if TYPE_CHECKING:
    from townhall.engine.base import Engine
    from townhall.generate.runner import Runner


ConfigArg = Annotated[Path, typer.Argument(
    metavar="CONFIG.toml", help="Generate config file, or a shipped example by name (student_teacher).")]
CountOpt = Annotated[Optional[int], typer.Option(
    "--count", "-n", min=1, help="Write at most N conversations (default: every topic once).")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Output file, appended to (default: the config's `out`, else ./NAME.jsonl).")]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", "-f", help="jsonl, sharegpt or txt (default: the config's `format`, else jsonl).")]
SeedOpt = Annotated[Optional[int], typer.Option(
    "--seed", min=0, help="Base seed: the same seed, config and model repeat the same conversations.")]
ForeverOpt = Annotated[bool, typer.Option("--forever", help="Cycle through the topics with fresh seeds until Ctrl+C.")]
ParallelOpt = Annotated[Optional[int], typer.Option(
    "--parallel", "-j", min=1, max=MAX_PARALLEL,
    help="Conversations in flight at once (default: the config's `parallel`, else chosen from the machine).")]
PerSpeakerOpt = Annotated[bool, typer.Option(
    "--per-speaker", help="jsonl/sharegpt: one line per speaker's point of view instead of one per conversation.")]
AgentsDirOpt = Annotated[Optional[Path], typer.Option("--agents-dir", help="Extra folder of persona files.")]


@engine_options
def generate_cmd(
    engine_flags: EngineFlags,
    config_file: ConfigArg,
    count: CountOpt = None,
    out: OutOpt = None,
    fmt: FormatOpt = None,
    seed: SeedOpt = None,
    forever: ForeverOpt = False,
    parallel: ParallelOpt = None,
    per_speaker: PerSpeakerOpt = False,
    agents_dir: AgentsDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Run one town hall per topic word and append each clean conversation to the output as it finishes."""
    from townhall.engine.factory import build_engine
    from townhall.generate.chats import shape_for
    from townhall.generate.config import OUTPUT_FORMATS, default_out, load_config, topics
    from townhall.generate.output import OutputFile
    from townhall.generate.parallel import cap_to_work
    from townhall.generate.progress import make_reporter
    from townhall.generate.runner import Runner
    from townhall.domain.personas import PersonaRegistry
    from townhall.store import Store

    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
    config = load_config(config_file, seed=seed, format=fmt, out=out, agents_dir=agents_dir, n_ctx=engine_flags.n_ctx,
                         parallel=parallel)
    words = topics(config)
    personas = PersonaRegistry.default(config.agents_dir).resolve(config.persona_names())
    shape = shape_for(config.format, per_speaker=per_speaker, assistant=config.assistant_name())
    output = OutputFile(config.out or default_out(config), config.format, config.fingerprint(), shape)
    done = output.done_topics()
    work = sum(1 for w in words if w.casefold() not in done)
    engine_config = engine_flags.config(n_ctx=config.n_ctx)
    width = config.parallel
    if width is None and engine_config.backend == "local":
        width = _local_default(engine_config.model, engine_config.gpu_layers, len(personas), config.n_ctx)
    if width is not None:
        width = cap_to_work(width, topics=work, count=count, forever=forever)
        engine_config = engine_config.model_validate({**engine_config.model_dump(), "parallel": width})
    reporter = make_reporter(sys.stdout, count_written=count is not None)
    with Store.open(db) as store:
        engine = build_engine(engine_config)

        def runner_of(n: int) -> Runner:
            return Runner(config, words, engine, store, personas, output, count=count, forever=forever,
                          parallel=n, reporter=reporter)

        width_of_server = partial(cap_to_work, topics=work, count=count, forever=forever)
        summary = asyncio.run(_run(engine, width, width_of_server, runner_of)).summary
    if summary.aborted:
        raise TownhallError(f"generate stopped early: {summary.aborted}")
    if summary.stopped and not forever:
        raise typer.Exit(130)


async def _run(engine: Engine, width: int | None, width_of_server: Callable[[int], int],
               runner_of: Callable[[int], Runner]) -> Runner:
    """Run the conversations, `width` at once (None: a server, as many streams as it takes).
    The first Ctrl+C (or SIGTERM) stops the run; a second quits at once."""
    from townhall.debate.session import CtrlC

    try:
        if width is None:
            await engine.start()
            width = width_of_server(_server_streams(engine))
        runner = runner_of(width)
        with CtrlC(runner.stop, None, signals=(signal.SIGINT, signal.SIGTERM)):
            await runner.run()
        return runner
    finally:
        await engine.aclose()


def _local_default(model: str | None, gpu_layers: int, agents: int, n_ctx: int) -> int:
    """`generate.parallel.local_parallel` for this machine and model (the file's header only)."""
    from townhall.engine.model_file import validate_model_file
    from townhall.engine.model_names import resolve_model_path
    from townhall.engine.system import gpu_offload_supported, physical_cores
    from townhall.generate.parallel import available_memory, local_parallel

    header = validate_model_file(resolve_model_path(model))
    gpu = gpu_layers != 0 and gpu_offload_supported()
    return local_parallel(cores=physical_cores(), gpu=gpu, header=header, agents=agents, n_ctx=n_ctx,
                          memory=available_memory())


def _server_streams(engine: object) -> int:
    """A started server engine's stream width, which also tells it that many will come."""
    from townhall.engine.openai import OpenAIEngine

    if not isinstance(engine, OpenAIEngine):
        return 1
    engine.streams = engine.max_streams
    return engine.streams


def register(app: typer.Typer) -> None:
    """Add `generate` to the root app."""
    app.command("generate")(generate_cmd)
