"""Build the engine a user asked for, from flags, a town-hall file or the TUI dialog.

The backends are imported on demand so a CPU-only user never loads httpx's server code
and a server user never loads llama.cpp.
"""

from __future__ import annotations

from townhall.engine.base import Engine
from townhall.engine.config import EngineConfig, EngineSection

__all__ = ["EngineConfig", "EngineSection", "build_engine"]


def build_engine(config: EngineConfig) -> Engine:
    """Construct (not start) the engine; `await engine.start()` loads or connects."""
    if config.backend == "openai":
        from townhall.engine.openai import OpenAIEngine

        return OpenAIEngine.from_config(config)
    from townhall.engine.local import LocalEngine

    return LocalEngine.from_config(config)
