"""Facts about this machine that the engine must not guess: cores, GPU offload, a build fault."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores we may run on (llama-cpp-python's default, cpu_count()//2, undercounts VMs)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            physical, core = "0", None
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "physical id":
                    physical = value
                elif key == "core id":
                    core = value
                elif not key and core is not None:
                    cores.add((physical, core))
                    core = None
            if core is not None:
                cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(usable, len(cores)) if cores else usable)


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers at all (False for the CPU wheel)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


@lru_cache(maxsize=1)
def amx_in_build() -> bool:
    """Whether this llama.cpp build carries AMX matrix kernels (llama.cpp's system info says)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


@contextmanager
def without_cpu_repack(enabled: bool | None = None) -> Iterator[None]:
    """Build a llama.cpp model (`Llama(...)` inside this block) without its extra CPU buffers.

    Why: llama-cpp-python 0.3.36 compiled natively on an AMX Xeon (this project's machine
    kind) faults inside `ggml_backend_amx_mul_mat` at `ldtilecfg` (seen in dmesg and gdb):
    the embedded Gemma on prompt batches of a few hundred tokens, SmolLM2's Q4_1 on its
    first. Loading with `use_extra_bufts = False` (llama.cpp's `--no-repack`) keeps the
    weights in plain CPU buffers and every batch runs. It also gives up the repacked
    kernels, so it is on only where the build has AMX kernels (`enabled=None`).
    `Llama()` takes no such argument and reads the model defaults once while loading, so
    they are swapped for the length of the load: load models on one thread at a time.
    """
    if enabled is None:
        enabled = amx_in_build()
    if not enabled:
        yield
        return
    from llama_cpp import llama as high_level

    original = high_level.llama_cpp.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    high_level.llama_cpp.llama_model_default_params = defaults
    try:
        yield
    finally:
        high_level.llama_cpp.llama_model_default_params = original


@contextmanager
def context_defaults(**fields: Any) -> Iterator[None]:
    """Build a `Llama(...)` inside this block with these llama_context_params fields set.

    Why: `Llama()` takes no `n_seq_max` or `kv_unified` argument (only its embedding mode
    sets them), and the batched engine needs both. Like `without_cpu_repack`, the defaults
    are swapped for the length of the load: load models on one thread at a time.
    """
    from llama_cpp import llama as high_level

    original = high_level.llama_cpp.llama_context_default_params

    def defaults() -> Any:
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    high_level.llama_cpp.llama_context_default_params = defaults
    try:
        yield
    finally:
        high_level.llama_cpp.llama_context_default_params = original
