"""The local engine: one llama.cpp model in-process, every agent with its own KV state.

Why per-sequence state and not `Llama.save_state()`: the latter copies an n_batch x n_vocab
float32 scores array (512 MiB with Gemma's vocabulary) on every save and load. The
per-sequence API copies only the KV cells of sequence 0, a few MB, in milliseconds.

How a turn runs (all llama.cpp calls on one worker thread, fed by one asyncio queue):
1. make the requesting agent's KV state resident (restore its bytes unless it is already);
2. tokenize the agent's whole prompt and keep the longest prefix the state already holds;
3. roll back anything past that prefix and evaluate only the rest;
4. sample, stream, stop; then save the agent's state (prompt + what it said).

Before each pick the request's logits steps (`engine/decoding.py`: n-gram bans against
`banned_texts`, `min_tokens`) write -inf into the logits row, so llama.cpp's sampler chain
and the numpy greedy picker both honour them.

A resample (same agent, same prompt, new seed) evaluates nothing: the prompt-end
checkpoint keeps the logits row its prompt ended with (1 MiB for Gemma's vocabulary), so
the retry samples from exactly what the first try saw. Re-evaluating the last token alone
would not do: a one-token batch gives slightly different logits than the prompt's batch,
enough to change a sampled turn.

The sliding-window trap (Gemma 3 attends over 512 positions on 15 of 18 layers): a saved
sequence state keeps only the cells still inside the window, so after a restore the state
can be rolled back by at most one token and stay exact. Two things keep restores exact:
the saved state ends where the emitted text ends (tokens that only formed a stop string
are dropped while the full cache is still live), and a second checkpoint taken at the end
of the prompt serves when the next prompt diverges inside the agent's own turn (the
scheduler trimmed it, or the text re-tokenizes differently). Anything earlier rebuilds.

With `parallel` > 1 the context holds that many sequences in one unified KV cache and
`engine/batch.py` serves requests instead of the sequential loop below: concurrent
requests are decoded together, one `llama_decode` a step, under the same per-agent rules.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import os
import time
from collections import deque
from contextlib import nullcontext
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townhall.engine.base import (
    DecodingSupport,
    EngineInfo,
    Generation,
    GenerationRequest,
    GenerationStats,
    ProbeResult,
    SamplingParams,
)
from townhall.engine.config import EngineConfig
from townhall.engine.decoding import BanIndexCache, TokenClasses, TurnConstraints
from townhall.engine.model_file import GGUFHeader, resolve_model_path, validate_model_file
from townhall.engine.stops import StopMatcher
from townhall.engine.system import context_defaults, gpu_offload_supported, physical_cores, without_cpu_repack
from townhall.errors import ContextOverflowError, GenerationError, ModelLoadError

if TYPE_CHECKING:
    from townhall.engine.batch import BatchServer

_SEQ = 0  # every agent's tokens live in sequence 0 while it is resident
_PENALTY_LAST_N = 64  # tokens the repeat penalty looks back over
_DRY_BREAKERS = ("\n", ":", '"', "*")  # llama.cpp's defaults: a match never spans these


@dataclass
class SavedState:
    """One agent's KV cells, the tokens they hold, and what they are valid for."""

    tokens: list[int]
    data: Any  # ctypes uint8 array, handed straight back to llama.cpp on restore
    size: int
    fingerprint: str
    logits: Any = None  # prompt-end checkpoints: the float32 row to sample the first token from

    @property
    def nbytes(self) -> int:
        return self.size + (self.logits.nbytes if self.logits is not None else 0)


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
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._requested_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads or physical_cores()
        self.gpu_layers = gpu_layers
        self.flash_attn = flash_attn
        self.n_batch = n_batch
        self.swa_full = swa_full
        # Greedy decoding without llama.cpp's sampler chain, which copies all n_vocab logits
        # into a candidate array every token (1.1 ms with Gemma's 262k vocabulary).
        self.fast_greedy = fast_greedy
        # Sequences decoded together (engine/batch.py); 1 keeps the sequential path.
        self.parallel = parallel
        self._batch: BatchServer | None = None
        self.model_path: Path | None = None
        self.header: GGUFHeader | None = None
        self.llm: Any = None
        self._info: EngineInfo | None = None
        self._states: dict[str, SavedState] = {}
        self._checkpoints: dict[str, SavedState] = {}  # each agent's state at the end of its last prompt
        self._resident: str | None = None  # agent whose tokens sequence 0 holds now
        self._fingerprint = ""
        self._n_swa = 0
        self._queue: asyncio.Queue[Generation] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="townhall-llama")
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.offloaded_layers = 0
        self.total_layers = 0
        self._token_classes: TokenClasses | None = None
        self._bans = BanIndexCache(lambda text: self.tokenize(text, add_bos=False))

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

        # Batched: one unified cache with room for every sequence's full context.
        # Batched: one unified cache with room for every sequence's full context, and one
        # sequence more for probes between steps (BatchServer.probe_row).
        sequences = self.parallel + 1 if self.parallel > 1 else 1
        defaults = context_defaults(n_seq_max=sequences, kv_unified=True) if sequences > 1 else nullcontext()
        with without_cpu_repack(), defaults:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx * sequences,
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
        from llama_cpp import __version__ as llama_cpp_version

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
        self._n_swa = int(self.header.metadata.get(f"{arch}.attention.sliding_window") or 0)
        stat = path.stat()
        self._fingerprint = "|".join(
            str(x)
            for x in (path.resolve(), stat.st_size, int(stat.st_mtime), llama_cpp_version, self.n_ctx,
                      self.n_batch, self.swa_full, self.flash_attn, self.offloaded_layers > 0)
        ) + (f"|x{self.parallel}" if self.parallel > 1 else "")
        if self.parallel > 1:
            from townhall.engine.batch import BatchServer

            self._batch = BatchServer(self, self.parallel)
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
                text = self._piece(token, special=True).decode("utf-8", errors="ignore")
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
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        self._states.clear()
        self._checkpoints.clear()
        self._resident = None
        self._token_classes = None
        self._bans = BanIndexCache(lambda text: self.tokenize(text, add_bos=False))
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
        if self._batch is not None:
            return await self._serve_batched(self._batch)
        while True:
            generation = await self._queue.get()
            if generation.cancelled:
                generation._finish(GenerationStats(finish_reason="cancelled"))
                continue

            def feed(piece: str, gen: Generation = generation) -> None:
                loop.call_soon_threadsafe(gen._feed, piece)

            try:
                stats = await loop.run_in_executor(self._executor, self.serve_blocking, generation.request,
                                                   feed, lambda gen=generation: gen.cancelled)
            except Exception as exc:  # noqa: BLE001 - reported through the handle, engine stays up
                error = exc if isinstance(exc, (ContextOverflowError, GenerationError)) else GenerationError(
                    f"generation failed: {exc}")
                generation._finish(None, error)
            else:
                generation._finish(stats)

    async def _serve_batched(self, batch: BatchServer) -> None:
        """Hand every queued request to the batch between steps; one step per executor call."""
        from townhall.engine.batch import Job

        assert self._queue is not None
        loop = asyncio.get_running_loop()

        def job(gen: Generation) -> Job:
            def feed(piece: str) -> None:
                loop.call_soon_threadsafe(gen._feed, piece)

            def done(stats: GenerationStats | None, error: BaseException | None) -> None:
                loop.call_soon_threadsafe(gen._finish, stats, error)

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
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def state_tokens(self, agent_id: str) -> int:
        state = self._states.get(agent_id)
        return len(state.tokens) if state else 0

    def state_bytes(self) -> int:
        states = [*self._states.values(), *self._checkpoints.values()]
        return sum(state.nbytes for state in states)

    def forget(self, agent_id: str) -> None:
        self._states.pop(agent_id, None)
        self._checkpoints.pop(agent_id, None)
        if self._resident == agent_id:
            self._resident = None
        if self._batch is not None:
            self._batch.forget(agent_id)

    def export_state(self, agent_id: str) -> SavedState | None:
        return self._states.get(agent_id)

    def import_state(self, agent_id: str, state: SavedState) -> bool:
        """Adopt a state saved elsewhere; refused (and never used) unless made for this exact setup."""
        if state.fingerprint != self._fingerprint:
            return False
        self._states[agent_id] = state
        self._checkpoints.pop(agent_id, None)
        if self._resident == agent_id:
            self._resident = None
        if self._batch is not None:
            self._batch.forget(agent_id)
        return True

    # -- the work, on the llama thread -------------------------------------------
    def serve_blocking(
        self,
        request: GenerationRequest,
        feed: Callable[[str], None] = lambda piece: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> GenerationStats:
        """Run one request to the end on the calling thread; the engine's only entry to llama.cpp."""
        if self._batch is not None:
            return self._batch.serve_one(request, feed, cancelled)
        import llama_cpp

        llm = self.llm
        started = time.perf_counter()
        stats = GenerationStats()
        prompt = self.tokenize(request.prompt)
        stats.prompt_tokens = len(prompt)
        sampling = request.sampling
        if len(prompt) >= self.n_ctx:
            raise ContextOverflowError(
                f"prompt of {len(prompt)} tokens does not fit the {self.n_ctx}-token context (raise --n-ctx "
                "or use a context strategy)"
            )
        agent = request.agent_id

        keep = self._make_resident(agent, prompt, stats)
        if keep == 0:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        llm.n_tokens = keep
        stats.reused_tokens = keep
        stats.prefill_tokens = len(prompt) - keep
        if keep == len(prompt):  # a resample: the checkpoint's logits stand in for an evaluation
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), _SEQ, keep, -1)
            _logits_row(llm)[:] = self._checkpoints[agent].logits  # type: ignore[index]
        else:
            try:
                llm.eval(prompt[keep:])
            except Exception as exc:
                self._invalidate(agent)
                raise GenerationError(f"llama.cpp failed to evaluate the prompt ({exc})") from None
            if agent is not None:
                checkpoint = self._snapshot(len(prompt))
                checkpoint.logits = _logits_row(llm).copy()
                self._checkpoints[agent] = checkpoint

        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        constraints = self._constraints(request, prompt)
        greedy = _GreedyPicker(llm, sampling.repeat_penalty) if (
            self.fast_greedy and sampling.temperature <= 0 and not request.grammar
            and sampling.dry_multiplier <= 0) else None
        sampler = None if greedy else _build_sampler(
            vocab, sampling, llm.n_vocab(), request.grammar, prompt, self.n_ctx)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        matcher = StopMatcher(sampling.stop)
        first_token_at: float | None = None
        emitted = 0  # characters shown to the requester
        generated: list[tuple[int, int]] = []  # (token, decoded characters up to and including it)
        decoded = 0
        stats.finish_reason = "length"
        try:
            for i in range(sampling.max_tokens):
                if cancelled():
                    stats.finish_reason = "cancelled"
                    break
                if llm.n_tokens >= self.n_ctx:
                    stats.finish_reason = "context"
                    break
                if constraints is not None:
                    constraints.apply(_logits_row(llm))
                token = greedy.pick() if greedy else llama_cpp.llama_sampler_sample(sampler, llm.ctx, -1)
                if constraints is not None:
                    constraints.observe(token)
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    stats.ttft_ms = (first_token_at - started) * 1000
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    stats.finish_reason = "stop"
                    break
                stats.generated_tokens += 1
                piece = decoder.decode(self._piece(token))
                decoded += len(piece)
                generated.append((token, decoded))
                text = matcher.feed(piece)
                if text:
                    emitted += len(text)
                    feed(text)
                if matcher.stopped:
                    stats.finish_reason = "stop"
                    break
                if i + 1 < sampling.max_tokens:
                    llm.eval([token])
        except Exception as exc:
            self._invalidate(agent)
            raise GenerationError(f"llama.cpp failed while generating ({exc})") from None
        finally:
            if sampler is not None:
                llama_cpp.llama_sampler_free(sampler)
        if not matcher.stopped:
            tail = matcher.feed(decoder.decode(b"", final=True)) + matcher.flush()
            if tail:
                emitted += len(tail)
                feed(tail)
        done = time.perf_counter()
        if first_token_at is not None and stats.generated_tokens > 1:
            stats.decode_tps = (stats.generated_tokens - 1) / max(done - first_token_at, 1e-9)
        if agent is None:
            self._resident = None
        else:
            # Keep only the tokens whose text was shown: the rest formed a stop string.
            shown = sum(1 for _, upto in generated if upto <= emitted)
            llm.n_tokens = min(llm.n_tokens, len(prompt) + shown)
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), _SEQ, llm.n_tokens, -1)
            t0 = time.perf_counter()
            self._states[agent] = self._snapshot(llm.n_tokens)
            self._resident = agent
            stats.save_ms = (time.perf_counter() - t0) * 1000
        stats.total_ms = (time.perf_counter() - started) * 1000
        return stats

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
        row, then put sequence 0 back as it was.

        Cheapest right after the agent's own turn: its state is resident, only the cue is
        new, and afterwards the live sequence is simply cut back to where it ended. Any other
        resident state the probe displaced is restored from its saved copy (which equals it
        byte for byte), so the next request finds exactly what it would have found. The
        saved states and checkpoints are never written. A batched engine probes in its
        scratch sequence instead, between steps, touching no slot.
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
        if self._batch is not None:  # a batched engine probes in its scratch sequence, between steps
            row, keep = self._batch.probe_row(agent_id, tokens)
        else:
            row, keep = self._probe_sequence_0(agent_id, tokens)
        row -= row.max()
        np.exp(row, out=row)
        total = float(row.sum(dtype=np.float64))
        probabilities = tuple(float(row[t]) / total for t in firsts)
        return ProbeResult(tuple(choices), probabilities, "logits", prompt_tokens=len(tokens),
                           evaluated_tokens=len(tokens) - keep, total_ms=(time.perf_counter() - started) * 1000)

    def _probe_sequence_0(self, agent_id: str | None, tokens: list[int]) -> tuple[Any, int]:
        """The sequential engine's probe: evaluate on sequence 0, copy the row, put it back."""
        import llama_cpp

        llm = self.llm
        before, n_before = self._resident, llm.n_tokens
        memory = llama_cpp.llama_get_memory(llm.ctx)
        keep = self._make_resident(agent_id, tokens, GenerationStats())
        if keep == 0:
            llama_cpp.llama_memory_clear(memory, True)
        llama_cpp.llama_memory_seq_rm(memory, _SEQ, keep, -1)
        llm.n_tokens = keep
        try:
            llm.eval(tokens[keep:])
            row = _logits_row(llm).copy()
        except Exception as exc:
            self._resident = None
            raise GenerationError(f"llama.cpp failed to evaluate the probe ({exc})") from None
        finally:
            self._put_back(before, n_before, keep)
        return row, keep

    def _put_back(self, before: str | None, n_before: int, keep: int) -> None:
        """Sequence 0 as it was before a probe: cut back if the probe only added to the
        resident's tokens, else the resident's saved state restored, else nobody resident."""
        import llama_cpp

        llm = self.llm
        memory = llama_cpp.llama_get_memory(llm.ctx)
        if before is not None and self._resident == before and keep >= n_before:
            llama_cpp.llama_memory_seq_rm(memory, _SEQ, n_before, -1)
            llm.n_tokens = n_before
            return
        saved = self._states.get(before) if before is not None else None
        self._resident = None
        llm.n_tokens = 0
        if saved is None or len(saved.tokens) != n_before:
            return
        llama_cpp.llama_memory_clear(memory, True)
        if llama_cpp.llama_state_seq_set_data(llm.ctx, saved.data, saved.size, _SEQ) == 0:
            llama_cpp.llama_memory_clear(memory, True)
            return
        llm.input_ids[:n_before] = saved.tokens
        llm.n_tokens = n_before
        self._resident = before

    def _constraints(self, request: GenerationRequest, prompt: list[int]) -> TurnConstraints | None:
        """This turn's logits step, or None when the request asks for none (the common case)."""
        sampling = request.sampling
        n = sampling.no_repeat_ngram_size
        if not n and sampling.min_tokens <= 0:
            return None
        banned = self._bans.index_for(request.agent_id, request.banned_texts, n, request.allowed_texts) if n else None
        return TurnConstraints(self.token_classes(), banned=banned, min_tokens=sampling.min_tokens, history=prompt)

    def token_classes(self) -> TokenClasses:
        """Newline and end-of-generation tokens, scanned once per loaded model (about 1 s for 262k tokens here)."""
        if self._token_classes is None:
            import llama_cpp

            vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
            buffer = ctypes.create_string_buffer(256)
            to_piece = llama_cpp.llama_token_to_piece

            def piece(token: int) -> bytes:  # one shared buffer: this runs 262k times
                n = to_piece(vocab, token, buffer, 256, 0, False)
                return ctypes.string_at(buffer, n) if n >= 0 else self._piece(token)

            self._token_classes = TokenClasses.scan(
                self.llm.n_vocab(), piece, lambda t: bool(llama_cpp.llama_vocab_is_eog(vocab, t)))
        return self._token_classes

    def _make_resident(self, agent_id: str | None, prompt: list[int], stats: GenerationStats) -> int:
        """Put the best state for this prompt in sequence 0; return how many prompt tokens it covers.

        The live resident and a restored state (the agent's last state or its prompt-end
        checkpoint) both serve up to their common prefix with the prompt, cut back to it, as
        far as the sliding window allows (`_can_roll_back`): after an edit or a switch of
        path an agent evaluates only what differs from the point of change on. Where the
        window forbids cutting back that far, a state the prompt extends (give or take its
        last token) is tried next; else nothing serves and the prompt is evaluated whole.
        """
        import llama_cpp

        if self._batch is not None:  # sequence 0 is a slot of the batch: use BatchServer.probe_row
            raise RuntimeError("the sequential path's sequence 0 is not available on a batched engine")
        llm = self.llm
        limit = len(prompt) - 1  # at least one token must be evaluated to get logits...
        checkpoint = self._checkpoints.get(agent_id) if agent_id is not None else None
        if checkpoint is not None and checkpoint.logits is not None and checkpoint.tokens == prompt:
            limit = len(prompt)  # ...unless the prompt-end checkpoint kept them
        if agent_id is not None and agent_id == self._resident:
            held = [int(t) for t in llm.input_ids[: llm.n_tokens]]
            keep = min(_common_prefix(held, prompt), limit)
            if keep >= len(held) or self._can_roll_back(keep):
                return keep
        self._resident = None
        llm.n_tokens = 0
        if agent_id is None:
            return 0
        memory = llama_cpp.llama_get_memory(llm.ctx)
        tried: list[SavedState] = []
        for roll_back in (True, False):
            best = self.best_saved_state(agent_id, prompt, roll_back=roll_back)
            if best is None or any(best is state for state in tried):
                continue
            tried.append(best)
            llama_cpp.llama_memory_clear(memory, True)
            t0 = time.perf_counter()
            read = llama_cpp.llama_state_seq_set_data(llm.ctx, best.data, best.size, _SEQ)
            stats.restore_ms += (time.perf_counter() - t0) * 1000
            if read == 0:  # llama.cpp refused it: never trust it again
                llama_cpp.llama_memory_clear(memory, True)
                self._resident = None
                llm.n_tokens = 0
                self.forget(agent_id)
                return 0
            n = len(best.tokens)
            llm.input_ids[:n] = best.tokens
            llm.n_tokens = n
            self._resident = agent_id
            keep = min(_common_prefix(best.tokens, prompt), limit)
            if keep >= n or self._can_roll_back(keep):
                return keep
        return 0

    def best_saved_state(self, agent_id: str | None, prompt: Sequence[int], *, roll_back: bool = False) -> SavedState | None:
        """The agent's best saved state (last turn or prompt-end checkpoint) made for this setup.

        By default (batch.py's use) one that `prompt` extends, give or take its last token, the
        longest such. With `roll_back` the one sharing the longest prefix with `prompt` (at
        least a few dozen tokens, or a restore costs more than it saves), the shorter on a tie
        (less to cut back, and the checkpoint keeps its logits); the caller restores it, checks
        the window and cuts it back. None if none serves.
        """
        least = 16  # a restore (7-10 ms) costs about as much as evaluating this many tokens
        best: SavedState | None = None
        best_key: tuple[int, int] = (-1, 0)
        for state in (self._states.get(agent_id), self._checkpoints.get(agent_id)) if agent_id is not None else ():
            if state is None or state.fingerprint != self._fingerprint:
                continue
            common = _common_prefix(state.tokens, prompt)
            if roll_back:
                usable = common >= min(least, len(state.tokens) - 1)
                key = (common, -len(state.tokens))
            else:
                usable = common >= len(state.tokens) - 1
                key = (len(state.tokens), 0)
            if usable and key > best_key:
                best, best_key = state, key
        return best

    def _can_roll_back(self, keep: int, seq: int = _SEQ) -> bool:
        """Whether every windowed cell that position `keep` of sequence `seq` attends to is
        still in the cache."""
        if not self._n_swa:
            return True
        import llama_cpp

        pos_min = llama_cpp.llama_memory_seq_pos_min(llama_cpp.llama_get_memory(self.llm.ctx), seq)
        return bool(pos_min <= max(0, keep - self._n_swa + 1))

    def _snapshot(self, n_tokens: int) -> SavedState:
        import llama_cpp

        llm = self.llm
        size = llama_cpp.llama_state_seq_get_size(llm.ctx, _SEQ)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llm.ctx, buffer, size, _SEQ)
        tokens = [int(t) for t in llm.input_ids[:n_tokens]]
        return SavedState(tokens, buffer, written, self._fingerprint)

    def _invalidate(self, agent_id: str | None) -> None:
        if agent_id is not None:
            self.forget(agent_id)
        self._resident = None

    def _piece(self, token: int, special: bool = False) -> bytes:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, -n, 0, special)
        return buf.raw[:n]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _logits_row(llm: Any) -> Any:
    """The last evaluated position's logits as a writable float32 view of llama.cpp's buffer."""
    import llama_cpp
    import numpy as np

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))


class _GreedyPicker:
    """Exactly llama.cpp's penalties + greedy samplers, on a numpy view of the logits.

    Same rule (the last 64 picked tokens, each distinct one once: logit <= 0 multiplied by
    the penalty, else divided, in float32) and the same tie-break (first maximum in
    token-id order, as `np.argmax`), so the output is identical, minus a 1 MB copy per token.
    """

    def __init__(self, llm: Any, repeat_penalty: float) -> None:
        import numpy as np

        self._np = np
        self._llm = llm
        self._n_vocab = llm.n_vocab()
        self._penalty = np.float32(repeat_penalty)
        self._recent: deque[int] = deque(maxlen=_PENALTY_LAST_N)

    def pick(self, row: Any = None) -> int:
        """Pick from `row` (a batched sequence's logits) or else the last evaluated position's."""
        import llama_cpp

        np = self._np
        if row is None:
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm.ctx, -1), shape=(self._n_vocab,))
        logits = row
        if self._recent and self._penalty != 1.0:
            ids = np.fromiter(set(self._recent), dtype=np.int64)
            logits = logits.copy()
            values = logits[ids]
            logits[ids] = np.where(values <= 0, values * self._penalty, values / self._penalty)
        token = int(np.argmax(logits))
        self._recent.append(token)
        return token


def _build_sampler(
    vocab: Any, sampling: SamplingParams, n_vocab: int, grammar: str | None, prompt: Sequence[int], n_ctx: int
) -> Any:
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda s: llama_cpp.llama_sampler_chain_add(chain, s)  # noqa: E731
    if grammar:
        g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not g:
            llama_cpp.llama_sampler_free(chain)
            raise GenerationError("the grammar for this request does not parse")
        add(g)
    add(llama_cpp.llama_sampler_init_penalties(n_vocab, _PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0))
    if sampling.dry_multiplier > 0:
        add(_dry_sampler(vocab, sampling, prompt, n_ctx))
    if sampling.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        if sampling.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        seed = sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
        add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def _dry_sampler(vocab: Any, sampling: SamplingParams, prompt: Sequence[int], n_ctx: int) -> Any:
    """llama.cpp's DRY sampler, fed the prompt first (as llama-server does) so echoes of it count."""
    import llama_cpp

    last_n = n_ctx if sampling.dry_penalty_last_n < 0 else sampling.dry_penalty_last_n
    breakers = (ctypes.c_char_p * len(_DRY_BREAKERS))(*(b.encode() for b in _DRY_BREAKERS))
    dry = llama_cpp.llama_sampler_init_dry(
        vocab, sampling.dry_multiplier, sampling.dry_base, sampling.dry_allowed_length, last_n,
        breakers, len(_DRY_BREAKERS))
    for token in prompt[-last_n:] if last_n else ():
        llama_cpp.llama_sampler_accept(dry, token)
    return dry
