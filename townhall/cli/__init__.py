"""The `townhall` command. Plain `townhall` opens the TUI; subcommands do the rest.

Each area registers its own commands from its own module, so the CLI stays a thin
shell over the engine, scheduler and store. Errors a user can cause are
`TownhallError`s and end here as one line on stderr with exit status 1.
"""

from __future__ import annotations

import sys

import typer

from townhall import __version__
from townhall.errors import TownhallError

app = typer.Typer(
    name="townhall",
    help="Persona agents debate on one local model while you watch, steer and keep the record.",
    no_args_is_help=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"townhall {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Run with no command to open the TUI on the embedded model."""
    if ctx.invoked_subcommand is None:
        from townhall.cli.tui_cmds import launch_default

        launch_default()


def _register_all() -> None:
    from townhall.cli import (
        debate_cmds, engine_cmds, generate_cmds, model_cmds, store_cmds, tui_cmds, watch_cmds, web_cmds,
    )

    for module in (engine_cmds, model_cmds, debate_cmds, store_cmds, tui_cmds, watch_cmds, web_cmds, generate_cmds):
        module.register(app)


_register_all()


def main() -> None:
    try:
        app(prog_name="townhall")
    except TownhallError as error:
        typer.secho(f"townhall: error: {error}", err=True, fg="red")
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("townhall: interrupted", err=True)
        sys.exit(130)
