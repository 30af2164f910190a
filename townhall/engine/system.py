"""Facts about this machine that the engine must not guess: cores and GPU offload."""

from __future__ import annotations

import os
from functools import lru_cache


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
