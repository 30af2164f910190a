"""`townhall tui` and plain `townhall`: open the TUI on a town hall, the embedded model by default.

Everything the app needs is built here and handed in (engine factory, store, spec,
personas, user config); the app itself constructs nothing it depends on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from townhall.cli.options import (
    DbOpt,
    EngineFlags,
    InterjectFileOpt,
    PaceOpt,
    engine_options,
    interject_feeds,
    reading_pace,
)

TownhallFileArg = Annotated[
    Optional[Path],
    typer.Argument(help="Town-hall TOML file, or the name of a shipped example (default: examples/default.toml)."),
]
TurnsOpt = Annotated[Optional[int], typer.Option("--turns", help="Stop after this many turns.", min=1)]
AgentsDirOpt = Annotated[Optional[Path], typer.Option("--agents-dir", help="Extra folder of persona TOML files.")]


def _keys_help() -> str:
    from townhall.tui.bindings import ACTIONS

    lines = [f"{a.keys:<10} {a.id:<22} {a.help}" for a in ACTIONS]
    pace = ("Each finished turn stays on show for the time it takes to read it at the reading pace "
            "(--pace, else pace_wpm in config.toml, else 240 words per minute); the pace keys change it "
            "and it is remembered.")
    return pace + "\n\nKeys (remap by id in the keymap table of config.toml):\n\n" + "\n\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add `townhall tui`."""

    @app.command("tui", help="Open the TUI and watch a town hall debate.\n\n" + _keys_help())
    @engine_options
    def tui(
        engine_flags: EngineFlags,
        townhall_file: TownhallFileArg = None,
        db: DbOpt = None,
        turns: TurnsOpt = None,
        agents_dir: AgentsDirOpt = None,
        interject_file: InterjectFileOpt = None,
        pace: PaceOpt = None,
    ) -> None:
        launch(townhall_file, engine_flags, db=db, turns=turns, agents_dir=agents_dir, interject_file=interject_file,
               pace=pace)


def _spec_path(townhall_file: Path | None) -> Path:
    from townhall.domain.spec import default_spec_path, example_path

    if townhall_file is None:
        return default_spec_path()
    if townhall_file.exists() or townhall_file.suffix == ".toml":
        return townhall_file
    return example_path(str(townhall_file))


def launch(
    townhall_file: Path | None = None,
    flags: EngineFlags | None = None,
    *,
    db: Path | None = None,
    turns: int | None = None,
    agents_dir: Path | None = None,
    interject_file: Path | None = None,
    pace: str | None = None,
) -> None:
    """Build the dependencies, run the app, and close the record whatever happens."""
    from townhall.engine.discovery import discover
    from townhall.engine.factory import build_engine
    from townhall.domain.personas import PersonaRegistry
    from townhall.domain.spec import load_spec
    from townhall.store import Store
    from townhall.debate.session import SessionPlan
    from townhall.tui.app import TownhallApp
    from townhall.tui.config import load_config

    reading = reading_pace(pace)  # a bad --pace fails before anything loads
    spec = load_spec(_spec_path(townhall_file), max_turns=turns)
    config = (flags or EngineFlags()).config(n_ctx=spec.n_ctx, section=spec.engine)
    registry = PersonaRegistry.default(agents_dir)
    names = ([spec.moderator] if spec.moderator else []) + list(spec.participants)
    personas = registry.resolve(list(dict.fromkeys(names)))
    tui_config = load_config()
    feeds = interject_feeds(interject_file)
    store = Store.open(db)
    try:
        app = TownhallApp(
            SessionPlan(spec, personas),
            engine_factory=build_engine,
            engine_config=config,
            store=store,
            config=tui_config,
            available_personas=registry.all(),
            feeds=feeds,
            find_models=lambda: discover().models(),
            pace=reading if reading is not None else tui_config.reading_pace(),  # the TUI paces by default
        )
        app.run()
    finally:
        store.close()


def launch_default() -> None:
    """Open the TUI on the embedded model and the default town hall (plain `townhall`, `make demo`)."""
    launch()
