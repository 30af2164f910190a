"""Engines: one loaded model (or one server) serving every agent through a request queue."""

from townhall.engine.base import (
    Engine,
    EngineInfo,
    Generation,
    GenerationRequest,
    GenerationStats,
    SamplingOverrides,
    SamplingParams,
)

__all__ = [
    "Engine",
    "EngineInfo",
    "Generation",
    "GenerationRequest",
    "GenerationStats",
    "SamplingOverrides",
    "SamplingParams",
]
