"""CLI options shared by the commands, so they read the same everywhere.

The eight engine flags (which model or server, and how to run it) are one group:
`@engine_options` adds them to a command and hands them in as one `EngineFlags`,
so run, tui, resume, bench, doctor and generate cannot drift apart.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from pydantic import ValidationError

from townhall.debate.interject_file import InterjectionFile
from townhall.debate.reading_pace import ReadingPace, parse_pace
from townhall.engine.factory import EngineConfig, EngineSection
from townhall.errors import ConfigError, Location, validation_message

_PANEL = "Engine"  # one panel in --help, the same in every command

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", rich_help_panel=_PANEL,
        help="GGUF path, or a name from `townhall models` (ollama:NAME:TAG, hf:ORG/REPO/FILE, "
             "lmstudio:PUBLISHER/REPO); default: $TOWNHALL_MODEL, else the embedded Gemma 3 270M."),
]
NCtxOpt = Annotated[Optional[int], typer.Option("--n-ctx", rich_help_panel=_PANEL,
    help="Context size per agent, in tokens.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", rich_help_panel=_PANEL,
    help="CPU threads (default: physical cores).")]
GpuLayersOpt = Annotated[
    Optional[int], typer.Option("--gpu-layers", rich_help_panel=_PANEL,
        help="Layers to offload to a GPU (-1 all, 0 none); ignored by CPU builds.")
]
BackendOpt = Annotated[
    Optional[str], typer.Option("--backend", rich_help_panel=_PANEL,
        help="local (llama.cpp in-process, the default) or openai (a server).")
]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", rich_help_panel=_PANEL,
    help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")]
ApiModelOpt = Annotated[Optional[str], typer.Option("--api-model", rich_help_panel=_PANEL,
    help="Model name to ask the server for.")]
ApiKeyEnvOpt = Annotated[
    Optional[str], typer.Option("--api-key-env", rich_help_panel=_PANEL,
        help="Environment variable holding the API key (never stored).")
]
DbOpt = Annotated[Optional[Path], typer.Option("--db",
    help="SQLite database (default: $TOWNHALL_DB, else the user data dir).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
InterjectFileOpt = Annotated[
    Optional[Path],
    typer.Option("--interject-file", help="Watch this file: each save's new text is interjected from the audience."),
]


PaceOpt = Annotated[
    Optional[str],
    typer.Option("--pace", metavar="WPM",
                 help="Reading pace: hold each finished turn for the time it takes to read at WPM words per "
                      "minute before the next speaker starts; max (or 0) is flat out."),
]


def reading_pace(text: str | None) -> ReadingPace | None:
    """`--pace` as a reading pace (None when not given); a bad value is one clear line."""
    return None if text is None else ReadingPace(parse_pace(text))


def interject_feeds(path: Path | None) -> list[InterjectionFile]:
    """The watched file as a session feed (none without --interject-file); a bad path is one clear line."""
    if path is None:
        return []
    feed = InterjectionFile(path)
    feed.check()
    return [feed]

_ENGINE_OPTIONS: dict[str, Any] = {
    "model": ModelOpt,
    "n_ctx": NCtxOpt,
    "threads": ThreadsOpt,
    "gpu_layers": GpuLayersOpt,
    "backend": BackendOpt,
    "base_url": BaseUrlOpt,
    "api_model": ApiModelOpt,
    "api_key_env": ApiKeyEnvOpt,
}


@dataclass(frozen=True)
class EngineFlags:
    """The engine flags as given on the command line (None: not given)."""

    model: str | None = None
    n_ctx: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None
    backend: str | None = None
    base_url: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None

    def config(self, *, n_ctx: int | None = None, section: EngineSection | None = None) -> EngineConfig:
        """The engine to build: these flags, then `section` (a town hall's `[engine]`), then defaults.

        `n_ctx` is the fallback when --n-ctx was not given (a town hall's own n_ctx).
        """
        values = asdict(self)
        if values["n_ctx"] is None:
            values["n_ctx"] = n_ctx
        return engine_config(**values, section=section)


assert [f.name for f in fields(EngineFlags)] == list(_ENGINE_OPTIONS)

Command = TypeVar("Command", bound=Callable[..., Any])


def engine_options(command: Command) -> Command:
    """Give a typer command the eight engine flags, delivered as its `engine_flags: EngineFlags`.

    The command's signature as typer reads it loses `engine_flags` and gains the
    flags (after the command's own options), so `--help` lists each one.
    """
    signature = inspect.signature(command, eval_str=True)
    if "engine_flags" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs an `engine_flags: EngineFlags` parameter")
    own = [p for p in signature.parameters.values() if p.name != "engine_flags"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in _ENGINE_OPTIONS.items()
    ]
    clash = {p.name for p in own} & set(_ENGINE_OPTIONS)
    if clash:
        raise TypeError(f"{command.__name__} declares engine flags itself: {sorted(clash)}")

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = EngineFlags(**{name: kwargs.pop(name, None) for name in _ENGINE_OPTIONS})
        return command(*args, engine_flags=flags, **kwargs)

    parameters = own + added
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty}
    return wrapper  # type: ignore[return-value]


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
