"""The sequential path: one request at a time on sequence 0, every agent's state swapped in.

How a turn runs (on the engine's llama thread):
1. make the requesting agent's KV state resident (restore its bytes unless it is already);
2. tokenize the agent's whole prompt and keep the longest prefix the state already holds;
3. roll back anything past that prefix and evaluate only the rest;
4. sample, stream, stop (`TurnDecoder`); then save the agent's state (prompt + what it said).

A resample (same agent, same prompt, new seed) evaluates nothing: the prompt-end checkpoint's
logits row is written back into llama.cpp's buffer and sampled from.

Two things keep restores exact under a sliding window (see `engine/states.py`): the saved
state ends where the emitted text ends (`TurnDecoder.kept_tokens`), and a second checkpoint
taken at the end of the prompt serves when the next prompt diverges inside the agent's own
turn (the scheduler trimmed it, or the text re-tokenizes differently). Anything earlier
rebuilds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from townhall.engine.base import GenerationRequest, GenerationStats
from townhall.engine.core import LlamaCore
from townhall.engine.states import SavedState, common_prefix
from townhall.errors import GenerationError

SEQ = 0  # every agent's tokens live in sequence 0 while it is resident


class SequentialServer:
    """Serves requests one at a time on sequence 0 of a one-sequence context."""

    def __init__(self, core: LlamaCore) -> None:
        self.core = core
        self.states = core.states
        self.resident: str | None = None  # agent whose tokens sequence 0 holds now

    def close(self) -> None:
        self.resident = None

    def forget(self, agent_id: str) -> None:
        """The agent's states are gone: sequence 0 no longer counts as holding them."""
        if self.resident == agent_id:
            self.resident = None

    def serve(self, request: GenerationRequest, feed: Callable[[str], None],
              cancelled: Callable[[], bool]) -> GenerationStats:
        """Run one request to its end: place, evaluate, decode, save."""
        core, llm, agent = self.core, self.core.llm, request.agent_id
        started = time.perf_counter()
        stats = GenerationStats()
        prompt = core.prompt_of(request, stats)
        self._evaluate_prompt(agent, prompt, stats)
        picker = core.picker(request, prompt)
        try:
            decoding = core.decoder(request, prompt, stats=stats, started=started, picker=picker,
                                    feed=feed, cancelled=cancelled)
        except Exception:
            picker.close()  # the batched path's `_start` frees it the same way
            raise
        try:
            while (token := decoding.step(core.row(-1) if decoding.needs_row else None, -1,
                                          llm.n_tokens, core.n_ctx)) is not None:
                llm.eval([token])
        except Exception as exc:
            self._invalidate(agent)
            raise GenerationError(f"llama.cpp failed while generating ({exc})") from None
        finally:
            picker.close()
        decoding.finish()
        if agent is None:
            self.resident = None
        else:
            llm.n_tokens = decoding.kept_tokens(llm.n_tokens, len(prompt))
            core.cut(SEQ, llm.n_tokens)
            t0 = time.perf_counter()
            self.states.save_turn(agent, self._snapshot(llm.n_tokens))
            self.resident = agent
            stats.save_ms = (time.perf_counter() - t0) * 1000
        stats.total_ms = (time.perf_counter() - started) * 1000
        return stats

    def _evaluate_prompt(self, agent: str | None, prompt: list[int], stats: GenerationStats) -> None:
        """Sequence 0 ends with the prompt and its logits are ready; the prompt-end checkpoint is taken."""
        core, llm = self.core, self.core.llm
        import llama_cpp

        keep = self.make_resident(agent, prompt, stats)
        if keep == 0:
            llama_cpp.llama_memory_clear(core.memory, True)
        llm.n_tokens = keep
        stats.reused_tokens = keep
        stats.prefill_tokens = len(prompt) - keep
        if keep == len(prompt):  # a resample: the checkpoint's logits stand in for an evaluation
            core.cut(SEQ, keep)
            core.row(-1)[:] = self.states.resample_logits(agent, prompt)
            return
        try:
            llm.eval(prompt[keep:])
        except Exception as exc:
            self._invalidate(agent)
            raise GenerationError(f"llama.cpp failed to evaluate the prompt ({exc})") from None
        if agent is not None:
            self.states.save_checkpoint(agent, self._snapshot(len(prompt)), core.row(-1).copy())

    # -- the stance probe ------------------------------------------------------------------
    def probe_row(self, agent_id: str | None, tokens: list[int]) -> tuple[Any, int]:
        """Evaluate on sequence 0 (reusing the agent's state as a turn does), copy the row, put it back.

        Cheapest right after the agent's own turn: its state is resident, only the cue is
        new, and afterwards the live sequence is simply cut back to where it ended. Any other
        resident state the probe displaced is restored from its saved copy (which equals it
        byte for byte), so the next request finds exactly what it would have found. The
        saved states and checkpoints are never written.
        """
        import llama_cpp

        core, llm = self.core, self.core.llm
        before, n_before = self.resident, llm.n_tokens
        keep = self.make_resident(agent_id, tokens, GenerationStats())
        if keep == 0:
            llama_cpp.llama_memory_clear(core.memory, True)
        core.cut(SEQ, keep)
        llm.n_tokens = keep
        try:
            llm.eval(tokens[keep:])
            row = core.row(-1).copy()
        except Exception as exc:
            self.resident = None
            raise GenerationError(f"llama.cpp failed to evaluate the probe ({exc})") from None
        finally:
            self._put_back(before, n_before, keep)
        return row, keep

    def _put_back(self, before: str | None, n_before: int, keep: int) -> None:
        """Sequence 0 as it was before a probe: cut back if the probe only added to the
        resident's tokens, else the resident's saved state restored, else nobody resident."""
        import llama_cpp

        core, llm = self.core, self.core.llm
        if before is not None and self.resident == before and keep >= n_before:
            core.cut(SEQ, n_before)
            llm.n_tokens = n_before
            return
        saved = self.states.last(before) if before is not None else None
        self.resident = None
        llm.n_tokens = 0
        if saved is None or len(saved.tokens) != n_before:
            return
        llama_cpp.llama_memory_clear(core.memory, True)
        if not self.states.restore(core.ctx, saved, SEQ):
            llama_cpp.llama_memory_clear(core.memory, True)
            return
        llm.input_ids[:n_before] = saved.tokens
        llm.n_tokens = n_before
        self.resident = before

    # -- residency ---------------------------------------------------------------------------
    def make_resident(self, agent_id: str | None, prompt: list[int], stats: GenerationStats) -> int:
        """Put the best state for this prompt in sequence 0; return how many prompt tokens it covers.

        The live resident and a restored state (the agent's last state or its prompt-end
        checkpoint) both serve up to their common prefix with the prompt, cut back to it, as
        far as the sliding window allows (`AgentStates.can_roll_back`): after an edit or a
        switch of path an agent evaluates only what differs from the point of change on.
        Where the window forbids cutting back that far, a state the prompt extends (give or
        take its last token) is tried next; else nothing serves and the prompt is evaluated whole.
        """
        import llama_cpp

        core, llm, states = self.core, self.core.llm, self.states
        limit = states.limit(agent_id, prompt)  # at least one token to evaluate, unless a checkpoint kept the logits
        if agent_id is not None and agent_id == self.resident:
            held = [int(t) for t in llm.input_ids[: llm.n_tokens]]
            keep = min(common_prefix(held, prompt), limit)
            if keep >= len(held) or states.can_roll_back(core.ctx, keep, SEQ):
                return keep
        self.resident = None
        llm.n_tokens = 0
        if agent_id is None:
            return 0
        tried: list[SavedState] = []
        for roll_back in (True, False):
            best = states.best(agent_id, prompt, roll_back=roll_back)
            if best is None or any(best is state for state in tried):
                continue
            tried.append(best)
            llama_cpp.llama_memory_clear(core.memory, True)
            t0 = time.perf_counter()
            restored = states.restore(core.ctx, best, SEQ)
            stats.restore_ms += (time.perf_counter() - t0) * 1000
            if not restored:  # llama.cpp refused it: never trust it again
                llama_cpp.llama_memory_clear(core.memory, True)
                self.resident = None
                llm.n_tokens = 0
                self.states.forget(agent_id)
                return 0
            n = len(best.tokens)
            llm.input_ids[:n] = best.tokens
            llm.n_tokens = n
            self.resident = agent_id
            keep = min(common_prefix(best.tokens, prompt), limit)
            if keep >= n or states.can_roll_back(core.ctx, keep, SEQ):
                return keep
        return 0

    def _snapshot(self, n_tokens: int) -> SavedState:
        llm = self.core.llm
        return self.states.snapshot(llm.ctx, SEQ, [int(t) for t in llm.input_ids[:n_tokens]])

    def _invalidate(self, agent_id: str | None) -> None:
        if agent_id is not None:
            self.states.forget(agent_id)
        self.resident = None
