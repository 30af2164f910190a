"""The engine configuration: which model or server serves the debate, and how.

Its own module so every backend (and the factory that picks one) can import it without
importing each other; the town-hall file's `[engine]` table is validated here too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BackendName = Literal["local", "openai"]


class EngineConfig(BaseModel):
    """Which model serves the debate. `backend="openai"` talks to a server instead."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendName = "local"
    model: str | None = None  # GGUF path; None = TOWNHALL_MODEL or the embedded model
    n_ctx: int = Field(default=4096, ge=128)
    threads: int | None = Field(default=None, ge=1)  # None = physical cores
    gpu_layers: int = -1  # -1 = all that the build can offload; 0 = CPU only
    flash_attn: bool = False
    # Sequences the local engine decodes together (concurrent requests share each step).
    parallel: int = Field(default=1, ge=1, le=256)
    base_url: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None


class EngineSection(BaseModel):
    """The `[engine]` table of a town-hall file: every field optional; flags win over it."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendName | None = None
    model: str | None = None
    threads: int | None = Field(default=None, ge=1)
    gpu_layers: int | None = None
    flash_attn: bool | None = None
    base_url: str | None = None
    api_model: str | None = None
    api_key_env: str | None = None
