"""Each agent's saved KV states, and the rules for when one may serve a prompt.

Why per-sequence state and not `Llama.save_state()`: the latter copies an n_batch x n_vocab
float32 scores array (512 MiB with Gemma's vocabulary) on every save and load. The
per-sequence API (`llama_state_seq_get_data` / `_set_data`) copies only one sequence's KV
cells, a few MB, in milliseconds; a state is portable between seq ids.

Two states per agent: its last turn's (prompt + what it said, trimmed to the text shown) and
a checkpoint taken at the end of its last prompt, which keeps the logits row that prompt
ended with (1 MiB for Gemma's vocabulary): a resample (same agent, same prompt, new seed)
evaluates nothing and samples from exactly what the first try saw. Re-evaluating the last
token alone would not do: a one-token batch gives slightly different logits than the
prompt's batch, enough to change a sampled turn.

The sliding-window trap (Gemma 3 attends over 512 positions on 15 of 18 layers): a saved
sequence state keeps only the cells still inside the window, so after a restore the state
can be rolled back by at most one token and stay exact (`can_roll_back`). A state is valid
only for the setup it was made on (model file, llama.cpp build, n_ctx, batch, SWA and
flash-attention settings, offload, parallel): the fingerprint says which.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_LEAST_SHARED = 16  # a restore (7-10 ms) costs about as much as evaluating this many tokens


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


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class AgentStates:
    """Every agent's last-turn state and prompt-end checkpoint, for one loaded setup.

    Both the sequential and the batched path save and restore through this one store, so
    they follow one rule set. `configure` binds it to a loaded model; until then (and after
    `clear`) it holds nothing and its fingerprint matches no state.
    """

    def __init__(self) -> None:
        self.turns: dict[str, SavedState] = {}
        self.checkpoints: dict[str, SavedState] = {}  # each agent's state at the end of its last prompt
        self.fingerprint = ""
        self.n_swa = 0  # positions the windowed layers attend over; 0 without a sliding window

    def configure(self, fingerprint: str, n_swa: int) -> None:
        """Bind the store to a freshly loaded setup."""
        self.fingerprint = fingerprint
        self.n_swa = n_swa

    def clear(self) -> None:
        self.turns.clear()
        self.checkpoints.clear()

    # -- reading -------------------------------------------------------------------------
    def last(self, agent_id: str) -> SavedState | None:
        """The agent's last-turn state, to export."""
        return self.turns.get(agent_id)

    def tokens(self, agent_id: str) -> int:
        state = self.turns.get(agent_id)
        return len(state.tokens) if state else 0

    def nbytes(self) -> int:
        return sum(state.nbytes for state in [*self.turns.values(), *self.checkpoints.values()])

    def resample_logits(self, agent_id: str | None, prompt: Sequence[int]) -> Any:
        """The logits row the agent's checkpoint kept, when it was taken at the end of exactly
        this prompt (a resample evaluates nothing), else None."""
        checkpoint = self.checkpoints.get(agent_id) if agent_id is not None else None
        if checkpoint is not None and checkpoint.logits is not None and checkpoint.tokens == prompt \
                and checkpoint.fingerprint == self.fingerprint:
            return checkpoint.logits
        return None

    def limit(self, agent_id: str | None, prompt: Sequence[int]) -> int:
        """How much of `prompt` may come from cells: all of it but the last token (its logits
        are wanted), the whole of it when the agent's prompt-end checkpoint kept them."""
        return len(prompt) if self.resample_logits(agent_id, prompt) is not None else len(prompt) - 1

    def best(self, agent_id: str | None, prompt: Sequence[int], *, roll_back: bool = False) -> SavedState | None:
        """The agent's best saved state (last turn or prompt-end checkpoint) made for this setup.

        By default (the batched path's use) one that `prompt` extends, give or take its last
        token, the longest such. With `roll_back` the one sharing the longest prefix with
        `prompt` (at least a few dozen tokens, or a restore costs more than it saves), the
        shorter on a tie (less to cut back, and the checkpoint keeps its logits); the caller
        restores it, checks the window and cuts it back. None if none serves.
        """
        best: SavedState | None = None
        best_key: tuple[int, int] = (-1, 0)
        for state in (self.turns.get(agent_id), self.checkpoints.get(agent_id)) if agent_id is not None else ():
            if state is None or state.fingerprint != self.fingerprint:
                continue
            common = common_prefix(state.tokens, prompt)
            if roll_back:
                usable = common >= min(_LEAST_SHARED, len(state.tokens) - 1)
                key = (common, -len(state.tokens))
            else:
                usable = common >= len(state.tokens) - 1
                key = (len(state.tokens), 0)
            if usable and key > best_key:
                best, best_key = state, key
        return best

    def can_roll_back(self, ctx: Any, keep: int, seq: int) -> bool:
        """Whether every windowed cell that position `keep` of sequence `seq` attends to is
        still in the cache."""
        if not self.n_swa:
            return True
        import llama_cpp

        pos_min = llama_cpp.llama_memory_seq_pos_min(llama_cpp.llama_get_memory(ctx), seq)
        return bool(pos_min <= max(0, keep - self.n_swa + 1))

    # -- writing -------------------------------------------------------------------------
    def snapshot(self, ctx: Any, seq: int, tokens: list[int]) -> SavedState:
        """Copy sequence `seq`'s cells (which hold `tokens`) out of the context.

        Into a ctypes buffer that goes straight back on restore: slicing a ctypes array
        builds a Python list and made a save take 200-370 ms.
        """
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, seq)
        return SavedState(tokens, buffer, written, self.fingerprint)

    @staticmethod
    def restore(ctx: Any, state: SavedState, seq: int) -> bool:
        """Write a state's cells into sequence `seq` (cleared by the caller); False if refused.

        A restored state holds no logits: evaluate at least one token before sampling.
        """
        import llama_cpp

        return bool(llama_cpp.llama_state_seq_set_data(ctx, state.data, state.size, seq))

    def save_turn(self, agent_id: str, state: SavedState) -> None:
        self.turns[agent_id] = state

    def save_checkpoint(self, agent_id: str, state: SavedState, logits: Any) -> None:
        """Keep the state at the end of a prompt, with a copy of the logits row it ended with."""
        state.logits = logits
        self.checkpoints[agent_id] = state

    def adopt(self, agent_id: str, state: SavedState) -> bool:
        """Take a state saved elsewhere; refused (and never used) unless made for this exact setup."""
        if state.fingerprint != self.fingerprint:
            return False
        self.turns[agent_id] = state
        self.checkpoints.pop(agent_id, None)
        return True

    def forget(self, agent_id: str) -> None:
        self.turns.pop(agent_id, None)
        self.checkpoints.pop(agent_id, None)
