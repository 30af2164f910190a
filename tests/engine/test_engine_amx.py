"""Long prompt batches on the real models: llama.cpp's AMX kernels crashed them on this CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.local import LocalEngine

LONG = "Minutes of the Millbrook town hall. Walt asked who pays for upkeep of the new park. " * 30


@pytest.mark.model
@pytest.mark.parametrize("which", ["model_path", "smollm_path"])
async def test_a_long_prompt_evaluates_on_each_real_model(which: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(which)
    engine = LocalEngine(path, n_ctx=2048, threads=1)
    await engine.start()
    try:
        generation = engine.generate(
            GenerationRequest("Walt", LONG + "\nWalt:", SamplingParams(temperature=0.0, max_tokens=8, stop=("\n",)))
        )
        await generation.result()
        assert generation.stats is not None and generation.stats.prefill_tokens >= 400
        assert generation.stats.finish_reason in ("stop", "length")
    finally:
        await engine.aclose()
