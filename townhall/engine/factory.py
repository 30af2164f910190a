"""Build the engine a user asked for, from flags, a town-hall file or the TUI dialog."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from townhall.engine.base import Engine


class EngineConfig(BaseModel):
    """Which model serves the debate. `backend="openai"` talks to a server instead."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "openai"] = "local"
    model: str | None = None  # GGUF path; None = TOWNHALL_MODEL or the embedded model
    n_ctx: int = Field(default=4096, ge=128)
    threads: int | None = Field(default=None, ge=1)  # None = physical cores
    gpu_layers: int = -1  # -1 = all that the build can offload; 0 = CPU only
    flash_attn: bool = False
    base_url: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None


class EngineSection(BaseModel):
    """The `[engine]` table of a town-hall file: every field optional; flags win over it."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "openai"] | None = None
    model: str | None = None
    threads: int | None = Field(default=None, ge=1)
    gpu_layers: int | None = None
    flash_attn: bool | None = None
    base_url: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None


def build_engine(config: EngineConfig) -> Engine:
    """Construct (not start) the engine; `await engine.start()` loads or connects."""
    if config.backend == "openai":
        from townhall.engine.openai import OpenAIEngine

        return OpenAIEngine.from_config(config)
    from townhall.engine.local import LocalEngine

    return LocalEngine.from_config(config)
