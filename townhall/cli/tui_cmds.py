"""CLI commands for the tui area (filled in by that area's work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""


def launch_default() -> None:
    """Open the TUI on the embedded model (plain `townhall`, `make demo`)."""
    typer.echo("The TUI is not built yet.", err=True)
    raise typer.Exit(1)
