"""Batched decoding for the local engine: many requests stepped together, one `llama_decode` a step.

Why: decoding one token reads every weight once (Gemma's 262k-row output projection most of
all), and the same read serves every sequence in the batch. On a 2-core CPU eight sequences
decode about 2.4x as many tokens a second as one.

How (all on the engine's llama thread):
- the context holds `parallel` sequences in one unified KV cache (`slots.SlotTable`); each
  request gets a slot: its agent's own if its tokens are still resident, else a free one or
  the least recently used idle one, into which the agent's saved state is restored
  (`llama_state_seq_set_data` into that seq id: a state is portable between seq ids);
- each step `plan_batch` puts every decoding sequence's last token and the prefill chunks
  that fit into one batch, `llama_decode` runs once, and each sequence samples from its own
  row (`llama_get_logits_ith` at its batch index) with its own sampler chain or greedy
  picker, constraints, stop matcher and cancellation;
- new requests join between steps; a finished one saves its state (trimmed to the text it
  showed, as the sequential path does) and its slot stays resident for the agent's next turn;
- prompts that start alike share their KV cells (prefix sharing, `engine/prefixes.py`):
  a request whose prompt begins with tokens another sequence already holds gets those cells
  copied and evaluates only the rest. A request whose shared part another request is still
  evaluating waits for it instead of evaluating the same tokens twice.

The per-agent rules are the sequential path's, from one store (`engine/states.py`): the
prompt-end checkpoint with its logits row (a resample evaluates nothing), the one-token
roll-back limit after a restore under a sliding window, fingerprints. Between two
`llama_decode`s each sequence takes the sequential path's decode step (`TurnDecoder.step`).
Two requests for one agent never run at once: the second waits in line. llama.cpp does not
promise bit-identical logits across batch shapes, so a greedy turn decoded in a batch may
differ from the same turn decoded alone.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from townhall.engine.base import GenerationRequest, GenerationStats
from townhall.engine.core import LlamaCore
from townhall.engine.decode_step import TurnDecoder
from townhall.engine.prefixes import MIN_SHARED, PrefixSharing
from townhall.engine.slots import Slot, SlotTable, plan_batch
from townhall.engine.states import SavedState, common_prefix
from townhall.errors import ContextOverflowError, GenerationError

Done = Callable[[GenerationStats | None, BaseException | None], None]

PREFIX_SEQUENCES = 4  # cached shared prefixes, each kept alive in a sequence of its own


def context_shape(parallel: int, n_ctx: int) -> tuple[int, int]:
    """(n_seq_max, KV cells) of a batched context: a full `n_ctx` for every slot and the probes'
    scratch sequence, and half of one for each cached prefix (the longest one kept)."""
    return parallel + 1 + PREFIX_SEQUENCES, n_ctx * (parallel + 1) + PREFIX_SEQUENCES * (n_ctx // 2)


@dataclass
class Job:
    """A request with its way back: pieces to `feed`, the end to `done` (called on the llama thread)."""

    request: GenerationRequest
    feed: Callable[[str], None]
    cancelled: Callable[[], bool]
    done: Done


@dataclass
class _Turn:
    """One admitted request: its slot, what it still has to evaluate, and its decoding state."""

    job: Job
    prompt: list[int]
    slot: Slot
    decoding: TurnDecoder
    pending: list[int]
    prefilling: bool
    first_row: Any = None  # a resample: the checkpoint's logits to pick the first token from
    finished: bool = False
    waiting_on: _Turn | None = None  # another request evaluating this one's prefix: copy it when done
    wait_for: int = 0  # how many of its tokens this one waits for

    @property
    def stats(self) -> GenerationStats:
        return self.decoding.stats


class BatchServer:
    """Steps every admitted request of one loaded model together; see the module docstring."""

    def __init__(self, core: LlamaCore, parallel: int) -> None:
        import llama_cpp

        self.core = core
        self.states = core.states
        self.table = SlotTable(parallel)
        self.scratch = parallel  # one more sequence, outside the slots, for probes between steps
        self.prefixes = PrefixSharing(core, self.table, parallel + 1, PREFIX_SEQUENCES)
        self.waiting: deque[Job] = deque()
        self.active: dict[int, _Turn] = {}  # by seq id
        self.restore_failures = 0  # restores llama.cpp refused (no contiguous free cells): prefilled instead
        self.steps = 0
        self.step_s = 0.0  # time inside step(), and the part of it inside llama_decode:
        self.decode_s = 0.0  # the rest is this module's own overhead
        self._forget: deque[str] = deque()  # agents to evict, posted from the event loop
        self.llama_batch = llama_cpp.llama_batch_init(core.n_batch, 0, 1)

    def close(self) -> None:
        import llama_cpp

        for turn in list(self.active.values()):
            turn.decoding.picker.close()
        self.active.clear()
        if self.llama_batch is not None:
            llama_cpp.llama_batch_free(self.llama_batch)
            self.llama_batch = None

    def abort(self, error: BaseException) -> None:
        """End every request in flight or in line with `error` (the step itself broke)."""
        for turn in list(self.active.values()):
            if not turn.finished:
                self._fail(turn, error)
        self.active.clear()
        while self.waiting:
            self.waiting.popleft().done(None, error)

    @property
    def sharing(self) -> bool:
        """Prefix sharing on (the default) or off (every request evaluates its own prompt)."""
        return self.prefixes.enabled

    @sharing.setter
    def sharing(self, on: bool) -> None:
        self.prefixes.enabled = on

    def has_work(self) -> bool:
        return bool(self.waiting or self.active)

    def forget(self, agent_id: str) -> None:
        """Evict the agent's resident tokens at the next step (safe from any thread)."""
        self._forget.append(agent_id)

    def serve(
        self,
        request: GenerationRequest,
        feed: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> GenerationStats:
        """Run one request to its end on the calling thread (the sequential entry's batched twin)."""
        result: list[tuple[GenerationStats | None, BaseException | None]] = []
        job = Job(request, feed, cancelled, lambda stats, error: result.append((stats, error)))
        self.step([job])
        while not result:
            self.step(())
        stats, error = result[0]
        if error is not None:
            raise error
        assert stats is not None
        return stats

    def probe_row(self, agent_id: str | None, tokens: list[int]) -> tuple[Any, int]:
        """The logits row after `tokens` on the agent's saved state, and how many tokens it covered.

        Runs between steps in the scratch sequence, so no slot (busy or resident) is touched
        and no state is written: the agent's best saved state is restored there (its saved
        copy equals its resident tokens), only the rest is evaluated, then the scratch is
        cleared. A prompt-end checkpoint for exactly `tokens` answers without evaluating.
        """
        import llama_cpp

        core, seq = self.core, self.scratch
        logits = self.states.resample_logits(agent_id, tokens)
        if logits is not None:
            return logits.copy(), len(tokens)
        core.clear(seq)
        keep = 0
        best = self.states.best(agent_id, tokens)
        if best is not None and self.states.restore(core.ctx, best, seq):
            keep = min(common_prefix(best.tokens, tokens), len(tokens) - 1)
            if keep < len(best.tokens) and not self.states.can_roll_back(core.ctx, keep, seq):
                keep = 0
            core.cut(seq, keep)
        try:
            batch, pos = self.llama_batch, keep
            while pos < len(tokens):
                part = tokens[pos : pos + core.n_batch]
                batch.n_tokens = put_tokens(batch, 0, part, seq, pos)
                batch.logits[len(part) - 1] = True
                status = llama_cpp.llama_decode(core.ctx, batch)
                if status != 0:
                    raise GenerationError(f"llama.cpp failed to evaluate the probe (status {status})")
                pos += len(part)
            return core.row(batch.n_tokens - 1).copy(), keep
        finally:
            core.clear(seq)

    # -- one step --------------------------------------------------------------------------
    def step(self, new: Sequence[Job]) -> None:
        """Admit what can start, decode one batch, sample every sequence that has logits."""
        entered = time.perf_counter()
        self.waiting.extend(new)
        self._evict_forgotten()
        self._admit()
        for turn in list(self.active.values()):
            if turn.prefilling and turn.job.cancelled():
                turn.stats.finish_reason = "cancelled"
                self._finish(turn)
        self._end_waits()
        ready = self._decode()
        for turn in self.active.values():
            if turn.first_row is not None and not turn.pending:
                ready.append((turn, None))
        for turn, at in ready:
            if turn.finished:
                continue
            try:
                self._advance(turn, at)
            except Exception as exc:  # noqa: BLE001 - reported through the request, the batch goes on
                self._fail(turn, GenerationError(f"llama.cpp failed while generating ({exc})"))
        for seq in [seq for seq, turn in self.active.items() if turn.finished]:
            del self.active[seq]
        self.step_s += time.perf_counter() - entered

    def _decode(self) -> list[tuple[_Turn, int | None]]:
        """One `llama_decode` over every sequence's pending tokens that fit; the sequences
        whose logits it produced, with their batch index."""
        import llama_cpp

        ready: list[tuple[_Turn, int | None]] = []
        plan = plan_batch([(seq, len(t.pending)) for seq, t in self.active.items()
                           if t.pending and t.waiting_on is None and not t.finished], self.core.n_batch)
        if not plan:
            return ready
        batch = self.llama_batch
        n = 0
        chunks: list[tuple[_Turn, list[int], int]] = []
        for chunk in plan:
            turn = self.active[chunk.key]
            tokens = turn.pending[: chunk.count]
            n = put_tokens(batch, n, tokens, turn.slot.seq_id, len(turn.slot.tokens))
            if chunk.completes:
                batch.logits[n - 1] = True
            chunks.append((turn, tokens, n - 1 if chunk.completes else -1))
        batch.n_tokens = n
        t0 = time.perf_counter()
        status = llama_cpp.llama_decode(self.core.ctx, batch)
        self.decode_s += time.perf_counter() - t0
        self.steps += 1
        if status != 0:
            error = GenerationError(f"llama.cpp failed to decode a batch (status {status})")
            for turn, _, _ in chunks:
                self._fail(turn, error)
            return ready
        for turn, tokens, index in chunks:
            turn.slot.tokens.extend(tokens)
            del turn.pending[: len(tokens)]
            if index >= 0:
                ready.append((turn, index))
        return ready

    def _advance(self, turn: _Turn, index: int | None) -> None:
        """The decode step for a sequence whose logits are ready (a checkpoint's when `index` is None)."""
        agent = turn.job.request.agent_id
        if index is None:
            row, turn.first_row = turn.first_row, None
        else:
            row = self.core.row(index)
            if turn.prefilling:
                turn.prefilling = False
                self.prefixes.remember(agent, turn.prompt, turn.slot)
                if agent is not None:
                    self.states.save_checkpoint(agent, self._snapshot(turn.slot), row.copy())
        token = turn.decoding.step(row, index, len(turn.slot.tokens), self.core.n_ctx)
        if token is None:
            self._finish(turn)
        else:
            turn.pending = [token]

    def _end_waits(self) -> None:
        """Requests waiting on another's prefill take its cells once it has evaluated them
        (or ended: then whatever any sequence holds is taken, the rest evaluated)."""
        for turn in self.active.values():
            donor = turn.waiting_on
            if donor is None or turn.finished:
                continue
            if not (donor.finished or not donor.prefilling or len(donor.slot.tokens) >= turn.wait_for):
                continue
            turn.waiting_on = None
            limit = self.states.limit(turn.job.request.agent_id, turn.prompt)
            keep = self.prefixes.share(turn.slot, turn.prompt, len(turn.slot.tokens), limit) or len(turn.slot.tokens)
            turn.pending = turn.prompt[keep:]
            turn.stats.reused_tokens = keep
            turn.stats.prefill_tokens = len(turn.prompt) - keep

    def _evict_forgotten(self) -> None:
        while self._forget:
            slot = self.table.evict(self._forget.popleft())
            if slot is not None:
                self.core.clear(slot.seq_id)

    # -- admission ---------------------------------------------------------------------------
    def _admit(self) -> None:
        held_back: deque[Job] = deque()
        while self.waiting:
            job = self.waiting.popleft()
            agent = job.request.agent_id
            if job.cancelled():
                job.done(GenerationStats(finish_reason="cancelled"), None)
                continue
            blocked = any(j.request.agent_id == agent for j in held_back) if agent is not None else False
            if blocked or self.table.busy_agent(agent) or not self.table.can_claim():
                held_back.append(job)
                continue
            try:
                turn = self._start(job)
            except (ContextOverflowError, GenerationError) as exc:
                job.done(None, exc)
                continue
            except Exception as exc:  # noqa: BLE001
                job.done(None, GenerationError(f"generation failed: {exc}"))
                continue
            self.active[turn.slot.seq_id] = turn
        self.waiting = held_back

    def _start(self, job: Job) -> _Turn:
        """Place the request in a slot with the best state its agent has; set up its decoding."""
        core, request = self.core, job.request
        started = time.perf_counter()
        stats = GenerationStats()
        prompt = core.prompt_of(request, stats)
        picker = core.picker(request, prompt)
        claimed = self.table.claim(request.agent_id)
        assert claimed is not None, "admitted without a free slot"
        slot, resident = claimed
        try:
            keep = self._place(slot, resident, request.agent_id, prompt, stats)
            decoding = core.decoder(request, prompt, stats=stats, started=started, picker=picker,
                                    feed=job.feed, cancelled=job.cancelled)
        except Exception:
            picker.close()
            core.clear(slot.seq_id)
            self.table.release(slot, keep=False)
            raise
        stats.reused_tokens = keep
        stats.prefill_tokens = len(prompt) - keep
        turn = _Turn(job, prompt, slot, decoding, pending=prompt[keep:], prefilling=keep < len(prompt))
        if turn.prefilling:
            self._wait_if_shared(turn)
        if keep == len(prompt):  # a resample: the checkpoint's logits stand in for an evaluation
            turn.first_row = self.states.resample_logits(request.agent_id, prompt).copy()
        return turn

    def _place(self, slot: Slot, resident: bool, agent: str | None, prompt: list[int],
               stats: GenerationStats) -> int:
        """Make the slot hold the longest usable prefix of `prompt`; return its length.

        The sequential path's `make_resident` rule, per slot: resident tokens roll back
        freely, a restored state by one token only (sliding window), the prompt-end
        checkpoint alone may cover the whole prompt (it kept the logits).
        """
        limit = self.states.limit(agent, prompt)
        keep = self._place_own(slot, resident, agent, prompt, stats, limit)
        if keep < limit:
            shared = self.prefixes.share(slot, prompt, keep, limit)
            if shared:
                return shared
            if not slot.tokens and keep:  # a failed share cleared the agent's own cells
                return self._place_own(slot, False, agent, prompt, stats, limit)
        return keep

    def _place_own(self, slot: Slot, resident: bool, agent: str | None, prompt: list[int],
                   stats: GenerationStats, limit: int) -> int:
        """The agent's own cells: resident ones, else its best saved state restored."""
        core, seq = self.core, slot.seq_id
        if resident:
            keep = min(common_prefix(slot.tokens, prompt), limit)
            return self._truncate(slot, keep)
        core.clear(seq)
        best = self.states.best(agent, prompt)
        if best is None:
            return 0
        t0 = time.perf_counter()
        restored = self.states.restore(core.ctx, best, seq)
        stats.restore_ms = (time.perf_counter() - t0) * 1000
        if not restored:  # no room in one piece, or refused: evaluate from scratch, keep the state
            self.restore_failures += 1
            core.clear(seq)
            return 0
        slot.tokens = list(best.tokens)
        keep = min(common_prefix(best.tokens, prompt), limit)
        if keep < len(best.tokens) and not self.states.can_roll_back(core.ctx, keep, seq):
            keep = 0
        return self._truncate(slot, keep)

    # -- prefix sharing ---------------------------------------------------------------------
    def _wait_if_shared(self, turn: _Turn) -> None:
        """Wait for a request still evaluating a longer common prefix, rather than evaluate it twice."""
        if not self.sharing:
            return
        prompt, have = turn.prompt, len(turn.slot.tokens)
        limit = self.states.limit(turn.job.request.agent_id, prompt)
        best, target = None, have + MIN_SHARED
        for other in self.active.values():
            if other.finished or not other.prefilling or other.waiting_on is not None:
                continue
            common = min(common_prefix(other.prompt, prompt), limit)
            if common >= target and common > len(other.slot.tokens):
                best, target = other, common
        if best is not None:
            turn.waiting_on, turn.wait_for = best, target

    def _truncate(self, slot: Slot, keep: int) -> int:
        if keep == 0:
            self.core.clear(slot.seq_id)
        elif keep < len(slot.tokens):
            self.core.cut(slot.seq_id, keep)
        del slot.tokens[keep:]
        return keep

    # -- the end of a request ------------------------------------------------------------------
    def _finish(self, turn: _Turn) -> None:
        """Flush the text, save the agent's state trimmed to what it showed, free the slot."""
        stats, slot = turn.stats, turn.slot
        agent = turn.job.request.agent_id
        turn.finished = True
        turn.pending = []
        turn.decoding.finish()
        if agent is None:
            self.core.clear(slot.seq_id)
            self.table.release(slot, keep=False)
        else:
            # Keep only the tokens whose text was shown: the rest formed a stop string.
            n = turn.decoding.kept_tokens(len(slot.tokens), len(turn.prompt))
            self.core.cut(slot.seq_id, n)
            del slot.tokens[n:]
            t0 = time.perf_counter()
            self.states.save_turn(agent, self._snapshot(slot))
            stats.save_ms = (time.perf_counter() - t0) * 1000
            self.table.release(slot, keep=True)
        stats.total_ms = (time.perf_counter() - turn.decoding.started) * 1000
        turn.job.done(stats, None)

    def _fail(self, turn: _Turn, error: BaseException) -> None:
        agent = turn.job.request.agent_id
        turn.finished = True
        turn.decoding.picker.close()
        if agent is not None:
            self.states.forget(agent)
        self.core.clear(turn.slot.seq_id)
        self.table.release(turn.slot, keep=False)
        turn.job.done(None, error)

    def _snapshot(self, slot: Slot) -> SavedState:
        return self.states.snapshot(self.core.ctx, slot.seq_id, list(slot.tokens))


def put_tokens(batch: Any, at: int, tokens: Sequence[int], seq: int, pos: int) -> int:
    """Write `tokens` of sequence `seq`, from position `pos`, into `batch` at index `at`,
    none of them asking for logits; returns the index after the last one."""
    for j, token in enumerate(tokens):
        batch.token[at + j] = token
        batch.pos[at + j] = pos + j
        batch.n_seq_id[at + j] = 1
        batch.seq_id[at + j][0] = seq
        batch.logits[at + j] = False
    return at + len(tokens)
