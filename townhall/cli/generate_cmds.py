"""`townhall generate CONFIG.toml`: conversations in bulk from a topic list (seed 003's chat-builder).

Everything that can be wrong with the input (the config, the personas, the output
file) is checked before the model loads. Ctrl+C stops cleanly: the conversation in
progress is kept in the store as stopped and never reaches the output; a second
Ctrl+C quits at once (the output is still whole, as every write is one fsynced
append).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from townhall.cli.options import DbOpt, EngineFlags, engine_options
from townhall.errors import ConfigError, TownhallError


@engine_options
def generate_cmd(
    engine_flags: EngineFlags,
    config_file: Annotated[Path, typer.Argument(metavar="CONFIG.toml", help="Generate config file, or a shipped example by name (student_teacher).")],
    count: Annotated[Optional[int], typer.Option("--count", "-n", min=1, help="Write at most N conversations (default: every topic once).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file, appended to (default: the config's `out`, else ./NAME.jsonl).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="jsonl, sharegpt or txt (default: the config's `format`, else jsonl).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Base seed: the same seed, config and model repeat the same conversations.")] = None,
    forever: Annotated[bool, typer.Option("--forever", help="Cycle through the topics with fresh seeds until Ctrl+C.")] = False,
    agents_dir: Annotated[Optional[Path], typer.Option("--agents-dir", help="Extra folder of persona files.")] = None,
    db: DbOpt = None,
) -> None:
    """Run one town hall per topic word and append each clean conversation to the output as it finishes."""
    from townhall.engine.factory import build_engine
    from townhall.generate.config import OUTPUT_FORMATS, default_out, load_config, topics
    from townhall.generate.output import OutputFile
    from townhall.generate.progress import make_reporter
    from townhall.generate.runner import Runner
    from townhall.personas import PersonaRegistry
    from townhall.session import CtrlC
    from townhall.store import Store

    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
    config = load_config(config_file, seed=seed, format=fmt, out=out, agents_dir=agents_dir, n_ctx=engine_flags.n_ctx)
    words = topics(config)
    personas = PersonaRegistry.default(config.agents_dir).resolve(config.persona_names())
    output = OutputFile(config.out or default_out(config), config.format, config.fingerprint())
    reporter = make_reporter(sys.stdout, count_written=count is not None)
    with Store.open(db) as store:
        engine = build_engine(engine_flags.config(n_ctx=config.n_ctx))
        runner = Runner(config, words, engine, store, personas, output, count=count, forever=forever,
                        reporter=reporter)

        async def main() -> None:
            # The first Ctrl+C (or SIGTERM) stops the run; a second quits at once.
            try:
                with CtrlC(runner.stop, None, signals=(signal.SIGINT, signal.SIGTERM)):
                    await runner.run()
            finally:
                await engine.aclose()

        asyncio.run(main())
    summary = runner.summary
    if summary.aborted:
        raise TownhallError(f"generate stopped early: {summary.aborted}")
    if summary.stopped and not forever:
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    """Add `generate` to the root app."""
    app.command("generate")(generate_cmd)
