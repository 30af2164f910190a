"""CLI options shared by run, tui, resume, bench and generate, so they read the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pydantic import ValidationError

from townhall.engine.factory import EngineConfig, EngineSection
from townhall.errors import ConfigError, Location, validation_message

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="GGUF model file (default: $TOWNHALL_MODEL, else the embedded Gemma 3 270M)."),
]
NCtxOpt = Annotated[Optional[int], typer.Option("--n-ctx", help="Context size per agent, in tokens.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: physical cores).")]
GpuLayersOpt = Annotated[
    Optional[int], typer.Option("--gpu-layers", help="Layers to offload to a GPU (-1 all, 0 none); ignored by CPU builds.")
]
BackendOpt = Annotated[
    Optional[str], typer.Option("--backend", help="local (llama.cpp in-process, the default) or openai (a server).")
]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")]
ApiModelOpt = Annotated[Optional[str], typer.Option("--api-model", help="Model name to ask the server for.")]
ApiKeyEnvOpt = Annotated[
    Optional[str], typer.Option("--api-key-env", help="Environment variable holding the API key (never stored).")
]
DbOpt = Annotated[Optional[Path], typer.Option("--db", help="SQLite database (default: $TOWNHALL_DB, else the user data dir).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def engine_config(
    *,
    backend: str | None = None,
    model: str | None = None,
    n_ctx: int | None = None,
    threads: int | None = None,
    gpu_layers: int | None = None,
    base_url: str | None = None,
    api_model: str | None = None,
    api_key_env: str | None = None,
    section: EngineSection | None = None,
) -> EngineConfig:
    """Flags first, then the town-hall file's `[engine]` table, then the defaults."""
    flags: dict[str, object] = {
        "backend": backend,
        "model": model,
        "n_ctx": n_ctx,
        "threads": threads,
        "gpu_layers": gpu_layers,
        "base_url": base_url,
        "api_model": api_model,
        "api_key_env": api_key_env,
    }
    values = section.model_dump(exclude_none=True) if section is not None else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return EngineConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, kind="", name=_flag)) from None


def _flag(loc: Location) -> str:
    return "--" + str(loc[0]).replace("_", "-") if loc else "options"
