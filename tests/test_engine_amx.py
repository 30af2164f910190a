"""Long prompt batches on the real models: llama.cpp's AMX kernels crashed them on this CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.local import LocalEngine
from townhall.engine.repack import plain_weights

LONG = "Minutes of the Millbrook town hall. Walt asked who pays for upkeep of the new park. " * 30


def test_plain_weights_restores_the_default_parameters() -> None:
    import llama_cpp.llama_cpp as raw

    original = raw.llama_model_default_params
    assert original().use_extra_bufts
    with plain_weights():
        assert raw.llama_model_default_params().use_extra_bufts is False
    with plain_weights(False):
        assert raw.llama_model_default_params is original
    assert raw.llama_model_default_params is original


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
