"""Loading a model without llama.cpp's CPU weight repacking, for the files that crash with it.

Measured with llama-cpp-python 0.3.36 on this project's CPU (AVX-512 and AMX): the
SmolLM2-135M-Instruct Q4_1 GGUF loads, then segfaults inside `llama_decode` on its
first batch; loaded with `use_extra_bufts = False` (llama.cpp's `--no-repack`) it
runs. The Gemma Q4_K_M file runs either way, so only the legacy Q4_0/Q4_1 types
lose the repacking speed-up. `Llama()` takes no such argument and loads in its
constructor, so the default model parameters are swapped for the duration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from townhall.engine.model_file import GGUFHeader

# general.file_type values of GGUFs whose repacked CPU kernels crashed here: MOSTLY_Q4_0, MOSTLY_Q4_1.
CRASHING_FILE_TYPES = frozenset({2, 3})


def needs_plain_weights(header: GGUFHeader | None) -> bool:
    return header is not None and header.metadata.get("general.file_type") in CRASHING_FILE_TYPES


@contextmanager
def plain_weights(enabled: bool = True) -> Iterator[None]:
    """Within the block, new models load with repacking off (when `enabled`)."""
    if not enabled:
        yield
        return
    import llama_cpp.llama_cpp as raw

    original = raw.llama_model_default_params

    def without_repacking() -> raw.llama_model_params:
        params = original()
        params.use_extra_bufts = False
        return params

    raw.llama_model_default_params = without_repacking
    try:
        yield
    finally:
        raw.llama_model_default_params = original
