"""`townhall doctor` and `townhall bench`: the truth about the model and its speed."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add doctor and bench."""
