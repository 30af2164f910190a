"""The load-time switch that keeps llama.cpp off its extra CPU buffers (whose AMX kernels crash
this machine kind's build): on inside the block, restored after it, and on only for AMX builds."""

from __future__ import annotations

import pytest
from llama_cpp import llama as high_level

from townhall.engine.system import without_cpu_repack


def test_defaults_swapped_only_inside_the_block() -> None:
    original = high_level.llama_cpp.llama_model_default_params
    assert original().use_extra_bufts  # llama.cpp's default: repack
    with without_cpu_repack(True):
        assert high_level.llama_cpp.llama_model_default_params().use_extra_bufts is False
    with without_cpu_repack(False):
        assert high_level.llama_cpp.llama_model_default_params is original
    assert high_level.llama_cpp.llama_model_default_params is original
    with pytest.raises(RuntimeError), without_cpu_repack(True):
        raise RuntimeError("a failed load")
    assert high_level.llama_cpp.llama_model_default_params is original


def test_the_switch_follows_the_build() -> None:
    import llama_cpp

    from townhall.engine.system import amx_in_build

    info = llama_cpp.llama_print_system_info()
    text = info.decode() if isinstance(info, bytes) else str(info)
    assert amx_in_build() == ("AMX_INT8 = 1" in text)
    original = high_level.llama_cpp.llama_model_default_params
    with without_cpu_repack():
        swapped = high_level.llama_cpp.llama_model_default_params is not original
    assert swapped == amx_in_build()
