"""Loading models without llama.cpp's extra CPU buffer types where its AMX kernels crash.

Measured with llama-cpp-python 0.3.36 on this project's machines (AVX-512 + AMX CPU,
in a VM): any prompt batch that llama.cpp routes to its AMX matmul dies with a
general protection fault on `ldtilecfg` in `ggml_backend_amx_mul_mat`
(libggml-cpu.so+0x7c193; dmesg showed 52 such faults from this project's processes
in 35 minutes). The SmolLM2-135M-Instruct Q4_1 GGUF crashes on its first prompt;
the embedded Gemma Q4_K_M crashes evaluating a 400-token prompt, every time.
Loaded with `use_extra_bufts = False` (llama.cpp's `--no-repack`), which takes the
AMX and repacked buffer types away, both run. `Llama()` takes no such argument and
loads the model in its constructor, so the default model parameters are swapped
for the duration of the load.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


@cache
def amx_in_build() -> bool:
    """llama.cpp was built with AMX kernels for this CPU (what `--no-repack` avoids)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


@contextmanager
def plain_weights(enabled: bool = True) -> Iterator[None]:
    """Within the block, new models load without extra buffer types (when `enabled`)."""
    if not enabled:
        yield
        return
    import llama_cpp.llama_cpp as raw

    original = raw.llama_model_default_params

    def without_extra_buffers() -> raw.llama_model_params:
        params = original()
        params.use_extra_bufts = False
        return params

    raw.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        raw.llama_model_default_params = original
