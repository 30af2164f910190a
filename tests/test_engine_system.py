"""The load-time switch that keeps llama.cpp off its repacked CPU weights (which crash this
machine kind's build on batches of 2+ tokens): on inside the block, restored after it."""

from __future__ import annotations

import pytest
from llama_cpp import llama as high_level

from townhall.engine.system import without_cpu_repack


def test_defaults_swapped_only_inside_the_block() -> None:
    original = high_level.llama_cpp.llama_model_default_params
    assert original().use_extra_bufts  # llama.cpp's default: repack
    with without_cpu_repack():
        assert high_level.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert high_level.llama_cpp.llama_model_default_params is original
    with pytest.raises(RuntimeError), without_cpu_repack():
        raise RuntimeError("a failed load")
    assert high_level.llama_cpp.llama_model_default_params is original
