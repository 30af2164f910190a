"""Typed errors whose message is the one line a user sees.

Every error a user can cause (a bad file, a missing model, a full context, a dead
server) is a `TownhallError`; the CLI and the TUI catch this type once and show
`str(error)`, so no traceback ever reaches the user for these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

Location = Sequence[str | int]


class TownhallError(Exception):
    """Base of all user-facing errors; `str()` is a complete one-line message."""


class ModelFileError(TownhallError):
    """The model file is missing, unreadable, truncated or not a GGUF."""


class ModelLoadError(TownhallError):
    """llama.cpp refused to load a file that looked like a GGUF."""


class ContextOverflowError(TownhallError):
    """A prompt does not fit in the context window."""


class GenerationError(TownhallError):
    """The engine failed while generating (server error, decode failure)."""


class BackendUnavailableError(GenerationError):
    """The inference server cannot be reached."""


class ConfigError(TownhallError):
    """A persona, town-hall or config file is malformed; the message names file and field."""


class StoreError(TownhallError):
    """The database cannot be opened or is from a newer Townhall."""


class RecordError(StoreError):
    """The record could not be written during a run (a full disk, a lock held too long, a file
    gone): the run stops before its next turn, and what was not written is kept in memory."""

    def __init__(self, path: object, cause: str) -> None:
        super().__init__(f"cannot write to {path}: {cause}")
        self.path = path
        self.cause = cause


class NotFoundError(TownhallError):
    """A named session, persona or file does not exist."""


def dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc)


def validation_message(
    error: ValidationError,
    source: str = "",
    *,
    kind: str = "field",
    name: Callable[[Location], str] = dotted,
) -> str:
    """Every problem pydantic found, on one line: `source: field 'a' is required; field 'b': ...`.

    The one formatter for files, flags, cards and dialogs: `kind` says what a location is
    ("card field", "" for bare names), `name` spells it (a flag as `--n-ctx`).
    """
    problems = []
    for item in error.errors():
        where = name(item["loc"]) or "(top level)"
        label = f"{kind} '{where}'" if kind else where
        if item["type"] == "missing":
            problems.append(f"{label} is required")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{label} is not a known field")
        else:
            problems.append(f"{label}: {' '.join(str(item['msg']).split())}")
    text = "; ".join(problems)
    return f"{source}: {text}" if source else text
