"""Typed errors whose message is the one line a user sees.

Every error a user can cause (a bad file, a missing model, a full context, a dead
server) is a `TownhallError`; the CLI and the TUI catch this type once and show
`str(error)`, so no traceback ever reaches the user for these.
"""

from __future__ import annotations


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


class NotFoundError(TownhallError):
    """A named session, persona or file does not exist."""
