"""`townhall models`: the GGUF files on this machine, under the names `--model` takes."""

from __future__ import annotations

import json
from collections.abc import Sequence

import typer

from townhall.cli.options import JsonOpt
from townhall.engine.discovery import Discovery, FoundModel, discover


def model_lines(found: Sequence[FoundModel]) -> list[str]:
    """One line per model: its name, the facts, the file; the names lined up."""
    if not found:
        return ["no GGUF models found"]
    width = max(len(m.name) for m in found)
    return [f"{m.name:<{width}}  {m.facts.summary()}  {m.facts.path}" for m in found]


def discovery_report(discovery: Discovery, found: Sequence[FoundModel]) -> dict[str, object]:
    """Where Townhall looked and what it found, as `doctor --json` and `models --json` give it."""
    return {
        "looked_in": [
            {"source": p.source, "path": str(p.path) if p.path else None, "exists": p.exists, "note": p.note}
            for p in discovery.places
        ],
        "models": [m.as_dict() for m in found],
    }


def models(as_json: JsonOpt = False) -> None:
    """List the GGUF models on this machine: the embedded one, Ollama's, the Hugging Face cache's,
    LM Studio's and TOWNHALL_MODELS_DIR's, read from their headers (no weights are loaded)."""
    discovery = discover()
    found = discovery.models()
    if as_json:
        typer.echo(json.dumps(discovery_report(discovery, found), indent=2))
        return
    for line in model_lines(found):
        typer.echo(line)
    typer.echo(f"looked in: {discovery.looked()}")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
