"""How many conversations `generate` runs at once when nobody says: a rule from the machine.

Why these numbers. Decoding one token reads every weight once; one batched step over
N sequences reads them once for all N, so throughput grows with N until compute, not
memory bandwidth, is the limit. Measured on a 2-core CPU with the embedded model
(tokens/s over all sequences): N=1 47, 2 64, 4 96, 8 115, 16 137. Past 8 the gain is
small (+19% for twice the sequences) while each conversation takes twice as long and
holds its KV cells twice as long, so a CPU gets `min(8, 4 × physical cores)`. A GPU
has far more compute per byte read and gets 16. A server decides its own batching:
llama-server takes as many streams as it has slots (`-np`), llama-cpp-python's server
one, vLLM and others `SERVER_STREAMS` (the engine's `max_streams`).

Memory caps the rule: every conversation in flight holds each agent's KV state (up to
n_ctx tokens each) plus the live sequence, and those must fit in half the memory
available now, or the run would swap instead of speed up.
"""

from __future__ import annotations

from townhall.engine.model_file import GGUFHeader

CPU_MAX = 8
CPU_PER_CORE = 4
GPU_DEFAULT = 16
KV_BYTES = 2  # llama.cpp's default f16 KV cache
MEMORY_SHARE = 0.5


def kv_bytes_per_token(header: GGUFHeader) -> int | None:
    """KV-cache bytes one token costs in this model (all layers, keys and values), if the file says."""
    arch = header.architecture
    meta = header.metadata
    if not arch:
        return None
    layers = meta.get(f"{arch}.block_count")
    heads = meta.get(f"{arch}.attention.head_count")
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    embd = meta.get(f"{arch}.embedding_length")
    key = meta.get(f"{arch}.attention.key_length") or (embd // heads if embd and heads else None)
    value = meta.get(f"{arch}.attention.value_length") or key
    if not (isinstance(layers, int) and isinstance(kv_heads, int) and isinstance(key, int) and isinstance(value, int)):
        return None
    return max(0, layers * kv_heads * (key + value) * KV_BYTES) or None


def available_memory() -> int | None:
    """Bytes the kernel says can be used now without swapping (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def local_parallel(
    *, cores: int, gpu: bool, header: GGUFHeader | None, agents: int, n_ctx: int, memory: int | None
) -> int:
    """The default N for the local engine (see the module docstring)."""
    wanted = GPU_DEFAULT if gpu else min(CPU_MAX, CPU_PER_CORE * max(1, cores))
    per_token = kv_bytes_per_token(header) if header is not None else None
    if per_token and memory:
        per_conversation = (agents + 1) * n_ctx * per_token
        wanted = min(wanted, max(1, int(memory * MEMORY_SHARE) // per_conversation))
    return max(1, wanted)


def cap_to_work(parallel: int, *, topics: int, count: int | None, forever: bool) -> int:
    """No more slots than conversations to run: a 3-topic run never sizes a batch of 8."""
    if forever:
        return max(1, min(parallel, count) if count is not None else parallel)
    work = min(topics, count) if count is not None else topics
    return max(1, min(parallel, work))
