"""The local engine: one llama.cpp model in-process, every agent with its own KV state.

This module loads the model, speaks the `Engine` protocol and owns the one llama thread
(every llama.cpp call runs on one worker thread, fed by one asyncio queue). The work itself
is in the engine core, which both serving paths share and neither imports the other:
- `engine/states.py`: each agent's saved states and checkpoints, and when one may serve;
- `engine/sampling.py`: sampler chain, greedy picker, DRY, the turn's logits steps;
- `engine/decode_step.py`: the step between two evaluations (pick, ban, stop, stream);
- `engine/core.py`: the loaded model as both paths use it;
- `engine/sequential.py`: one request at a time on sequence 0 (`parallel` = 1);
- `engine/batch.py`: with `parallel` > 1 the context holds that many sequences in one
  unified KV cache and concurrent requests are decoded together, one `llama_decode` a step,
  under the same per-agent rules; `engine/slots.py` says which sequence holds whose tokens
  and `engine/prefixes.py` lets prompts that start alike share their cells.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from townhall.engine.base import (
    DecodingSupport,
    EngineInfo,
    Generation,
    GenerationRequest,
    GenerationStats,
    ProbeResult,
)
from townhall.engine.batch import BatchServer, Job, context_shape
from townhall.engine.config import EngineConfig
from townhall.engine.core import LlamaCore
from townhall.engine.decoding import TokenClasses
from townhall.engine.model_file import GGUFHeader, validate_model_file
from townhall.engine.model_names import resolve_model_path
from townhall.engine.sequential import SequentialServer
from townhall.engine.states import AgentStates, SavedState
from townhall.engine.system import context_defaults, gpu_offload_supported, physical_cores, without_cpu_repack
from townhall.errors import ContextOverflowError, GenerationError, ModelLoadError


class LocalEngine:
    """Engine protocol over llama-cpp-python, with per-agent KV states in memory."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        threads: int | None = None,
        gpu_layers: int = -1,
        flash_attn: bool = False,
        n_batch: int = 512,
        swa_full: bool = True,
        fast_greedy: bool = True,
        parallel: int = 1,
        cpu_repack: bool | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._requested_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads or physical_cores()
        self.gpu_layers = gpu_layers
        # A batched context attends over one unified cache holding every sequence: llama.cpp's
        # flash-attention kernel skips the cells masked out for a sequence (the CPU one cell
        # by cell), the default path computes them all. Measured on generate's bench (8
        # conversations, CPU time, busy machine): 11% more tokens per CPU-second at N=8; one
        # sequence alone gains about 7%, and the sequential path keeps what it was asked for.
        self.flash_attn = flash_attn or parallel > 1
        self.n_batch = n_batch
        self.swa_full = swa_full
        # Greedy decoding without llama.cpp's sampler chain (`sampling.TokenPicker`).
        self.fast_greedy = fast_greedy
        # Sequences decoded together (engine/batch.py); 1 keeps the sequential path.
        self.parallel = parallel
        # llama.cpp's repacked CPU kernels: None uses them where they are safe (`without_cpu_repack`).
        # They round differently for a batch of one and a batch of many (seen on an AVX-512 EPYC:
        # a greedy pick flips between batched and one-at-a-time decoding), so the tests that check
        # reuse and batching bit for bit load with False: plain buffers, the same sums in any batch.
        self.cpu_repack = cpu_repack
        self.states = AgentStates()
        self._core: LlamaCore | None = None
        self._server: SequentialServer | BatchServer | None = None
        self.model_path: Path | None = None
        self.header: GGUFHeader | None = None
        self.llm: Any = None
        self._info: EngineInfo | None = None
        self._queue: asyncio.Queue[Generation] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="townhall-llama")
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.offloaded_layers = 0
        self.total_layers = 0

    @classmethod
    def from_config(cls, config: EngineConfig) -> LocalEngine:
        return cls(
            config.model,
            n_ctx=config.n_ctx,
            threads=config.threads,
            gpu_layers=config.gpu_layers,
            flash_attn=config.flash_attn,
            parallel=config.parallel,
        )

    # -- the loaded model's parts ------------------------------------------------
    @property
    def core(self) -> LlamaCore:
        if self._core is None:
            raise RuntimeError("the model is not loaded")
        return self._core

    @property
    def batch(self) -> BatchServer | None:
        """The batched server (`parallel` > 1, once loaded), else None."""
        return self._server if isinstance(self._server, BatchServer) else None

    @property
    def sequential(self) -> SequentialServer:
        """The sequential server, which owns sequence 0 (`parallel` = 1, once loaded)."""
        if isinstance(self._server, SequentialServer):
            return self._server
        if self.parallel > 1:
            raise RuntimeError("the sequential path's sequence 0 is not available on a batched engine")
        raise RuntimeError("the model is not loaded")

    # -- lifecycle -----------------------------------------------------------
    @property
    def info(self) -> EngineInfo:
        if self._info is None:
            name = Path(str(self._requested_path)).name if self._requested_path else "embedded Gemma 3 270M"
            return EngineInfo(backend="local", model_name=name, n_ctx=self.n_ctx, device="loading…")
        return self._info

    @property
    def loaded(self) -> bool:
        return self.llm is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._start_lock is None or self._loop is not loop:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.llm is None:
                await loop.run_in_executor(self._executor, self._load)
            # A worker belongs to one event loop; a new loop (a new app, a new test) gets its own.
            if self._worker is None or self._worker.done() or self._loop is not loop:
                self._loop = loop
                self._queue = asyncio.Queue()
                self._worker = loop.create_task(self._serve_forever())

    def load_blocking(self) -> None:
        """Load without an event loop (benchmarks and doctor)."""
        if self.llm is None:
            self._load()

    def new_llama(self) -> Any:
        """A high-level Llama on this engine's model with its exact settings (the engine's own,
        or a benchmark baseline's that must match it)."""
        from llama_cpp import Llama

        # Batched: one unified cache with room for every sequence's full context, one sequence
        # more for probes between steps and a few for shared prefixes (batch.context_shape).
        sequences, cells = 1, self.n_ctx
        if self.parallel > 1:
            sequences, cells = context_shape(self.parallel, self.n_ctx)
        defaults = context_defaults(n_seq_max=sequences, kv_unified=True) if sequences > 1 else nullcontext()
        with without_cpu_repack(None if self.cpu_repack is None else not self.cpu_repack), defaults:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=cells,
                n_batch=self.n_batch,
                n_ubatch=self.n_batch,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_gpu_layers=self.offloaded_layers,
                flash_attn=self.flash_attn,
                swa_full=self.swa_full,
                verbose=False,
            )

    def _load(self) -> None:
        path = resolve_model_path(self._requested_path)
        self.header = validate_model_file(path)
        self.model_path = path
        import llama_cpp

        from townhall.engine import llama_log

        llama_log.install()

        self.total_layers = (self.header.block_count or 0) + 1  # + the output layer
        supports = gpu_offload_supported()
        requested = self.total_layers if self.gpu_layers < 0 else min(self.gpu_layers, self.total_layers)
        self.offloaded_layers = requested if supports else 0
        try:
            self.llm = self.new_llama()
        except (ValueError, RuntimeError, OSError) as exc:
            detail = "; ".join(line for line in llama_log.recent(5) if "error" in line.lower()) or str(exc)
            raise ModelLoadError(f"{path}: llama.cpp could not load this model ({detail})") from None
        arch = self.header.architecture or ""
        n_swa = int(self.header.metadata.get(f"{arch}.attention.sliding_window") or 0)
        self.states.configure(self._fingerprint(path), n_swa)
        self._core = LlamaCore(self.llm, self.states, n_ctx=self.n_ctx, n_batch=self.n_batch,
                               fast_greedy=self.fast_greedy)
        self._server = BatchServer(self._core, self.parallel) if self.parallel > 1 else SequentialServer(self._core)
        self._info = EngineInfo(
            backend="local",
            model_name=self.header.name or path.stem,
            n_ctx=self.n_ctx,
            device=self.device_description(),
            model_path=str(path),
            chat_template=self.header.chat_template,
            eos_markers=self._eos_markers(),
            decoding=DecodingSupport(ngram_ban=True, min_tokens=True, dry=hasattr(llama_cpp, "llama_sampler_init_dry")),
            stance_probe="logits",
        )

    def _fingerprint(self, path: Path) -> str:
        """What a saved state is valid for: this model file, llama.cpp build and context setup."""
        from llama_cpp import __version__ as llama_cpp_version

        stat = path.stat()
        return "|".join(
            str(x)
            for x in (path.resolve(), stat.st_size, int(stat.st_mtime), llama_cpp_version, self.n_ctx,
                      self.n_batch, self.swa_full, self.flash_attn, self.offloaded_layers > 0)
        ) + (f"|x{self.parallel}" if self.parallel > 1 else "")

    def device_description(self) -> str:
        """What is really doing the work: never claim a GPU that is not."""
        if self.offloaded_layers <= 0:
            return f"CPU · {self.threads} threads"
        if self.offloaded_layers >= self.total_layers:
            return f"GPU · {self.offloaded_layers}/{self.total_layers} layers offloaded"
        return f"GPU+CPU · {self.offloaded_layers}/{self.total_layers} layers offloaded · {self.threads} threads"

    def _eos_markers(self) -> tuple[str, ...]:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        markers: list[str] = []
        for token in (llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)):
            if token >= 0:
                text = self.core.piece(token, special=True).decode("utf-8", errors="ignore")
                if text and text not in markers:
                    markers.append(text)
        for common in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "</s>"):
            if common not in markers and self._is_single_control_token(common):
                markers.append(common)
        return tuple(markers)

    def _is_single_control_token(self, text: str) -> bool:
        import llama_cpp

        tokens = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        return len(tokens) == 1 and bool(llama_cpp.llama_vocab_is_control(vocab, tokens[0]))

    async def aclose(self) -> None:
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._worker = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_model)
        self._executor.shutdown(wait=False)

    def _close_model(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._core = None
        self.states.clear()
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    # -- requests ------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> Generation:
        generation = Generation(request)
        if self._queue is None:
            raise RuntimeError("LocalEngine.start() must be awaited before generate()")
        self._queue.put_nowait(generation)
        return generation

    async def _serve_forever(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        if isinstance(self._server, BatchServer):
            return await self._serve_batched(self._server)
        while True:
            generation = await self._queue.get()
            if generation.cancelled:
                generation.finish(GenerationStats(finish_reason="cancelled"))
                continue

            def feed(piece: str, gen: Generation = generation) -> None:
                loop.call_soon_threadsafe(gen.feed, piece)

            try:
                stats = await loop.run_in_executor(self._executor, self.serve_blocking, generation.request,
                                                   feed, lambda gen=generation: gen.cancelled)
            except Exception as exc:  # noqa: BLE001 - reported through the handle, engine stays up
                error = exc if isinstance(exc, (ContextOverflowError, GenerationError)) else GenerationError(
                    f"generation failed: {exc}")
                generation.finish(None, error)
            else:
                generation.finish(stats)

    async def _serve_batched(self, batch: BatchServer) -> None:
        """Hand every queued request to the batch between steps; one step per executor call."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()

        def job(gen: Generation) -> Job:
            def feed(piece: str) -> None:
                loop.call_soon_threadsafe(gen.feed, piece)

            def done(stats: GenerationStats | None, error: BaseException | None) -> None:
                loop.call_soon_threadsafe(gen.finish, stats, error)

            return Job(gen.request, feed, lambda: gen.cancelled, done)

        while True:
            new = [] if batch.has_work() else [job(await self._queue.get())]
            while not self._queue.empty():
                new.append(job(self._queue.get_nowait()))
            try:
                await loop.run_in_executor(self._executor, batch.step, new)
            except Exception as exc:  # noqa: BLE001 - reported through the handles, engine stays up
                error = GenerationError(f"generation failed: {exc}")
                await loop.run_in_executor(self._executor, batch.abort, error)

    async def count_tokens(self, text: str) -> int:
        if self.llm is None:
            await self.start()
        return await asyncio.to_thread(lambda: len(self.tokenize(text, add_bos=False)))

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return self.core.tokenize(text, add_bos)

    def token_classes(self) -> TokenClasses:
        """Newline and end-of-generation tokens, scanned once per loaded model (about 1 s for 262k tokens here)."""
        return self.core.constraints.token_classes()

    # -- saved states ----------------------------------------------------------
    def state_tokens(self, agent_id: str) -> int:
        return self.states.tokens(agent_id)

    def state_bytes(self) -> int:
        return self.states.nbytes()

    def forget(self, agent_id: str) -> None:
        self.states.forget(agent_id)
        if self._server is not None:
            self._server.forget(agent_id)

    def export_state(self, agent_id: str) -> SavedState | None:
        return self.states.last(agent_id)

    def import_state(self, agent_id: str, state: SavedState) -> bool:
        """Adopt a state saved elsewhere; refused (and never used) unless made for this exact setup."""
        if not self.states.adopt(agent_id, state):
            return False
        if self._server is not None:
            self._server.forget(agent_id)
        return True

    # -- the work, on the llama thread -------------------------------------------
    def serve_blocking(
        self,
        request: GenerationRequest,
        feed: Callable[[str], None] = lambda piece: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> GenerationStats:
        """Run one request to the end on the calling thread; the engine's only entry to llama.cpp."""
        if self._server is None:
            raise RuntimeError("the model is not loaded")
        return self._server.serve(request, feed, cancelled)

    # -- the stance probe: read the next-token distribution, leave every state as it was ----
    async def probe(self, agent_id: str | None, prompt: str, choices: Sequence[str]) -> ProbeResult:
        """Each choice's first-token probability after `prompt`, on the llama thread.

        The engine's single-thread executor runs it between requests, never inside one.
        """
        if self.llm is None:
            await self.start()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.probe_blocking, agent_id, prompt, tuple(choices))

    def probe_blocking(self, agent_id: str | None, prompt: str, choices: Sequence[str]) -> ProbeResult:
        """Evaluate `prompt` on the agent's state (reused as a turn reuses it), read the logits
        row, and leave every state as it was: the sequential engine on sequence 0 and puts it
        back (`SequentialServer.probe_row`), a batched one in its scratch sequence between steps
        (`BatchServer.probe_row`). The saved states and checkpoints are never written.
        """
        import numpy as np

        started = time.perf_counter()
        tokens = self.tokenize(prompt)
        if len(tokens) >= self.n_ctx:
            raise ContextOverflowError(
                f"probe prompt of {len(tokens)} tokens does not fit the {self.n_ctx}-token context")
        firsts = []
        for choice in choices:
            ids = self.tokenize(choice, add_bos=False)
            if not ids:
                raise GenerationError(f"probe choice {choice!r} has no tokens")
            firsts.append(ids[0])
        if self._server is None:
            raise RuntimeError("the model is not loaded")
        row, keep = self._server.probe_row(agent_id, tokens)
        row -= row.max()
        np.exp(row, out=row)
        total = float(row.sum(dtype=np.float64))
        probabilities = tuple(float(row[t]) / total for t in firsts)
        return ProbeResult(tuple(choices), probabilities, "logits", prompt_tokens=len(tokens),
                           evaluated_tokens=len(tokens) - keep, total_ms=(time.perf_counter() - started) * 1000)
