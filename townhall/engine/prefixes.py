"""Prefix sharing for the batched engine: prompts that start alike share their KV cells.

A request whose prompt begins with tokens another sequence already holds (a live slot, or a
cached prefix kept in a sequence of its own) gets those cells by `llama_memory_seq_cp`, which
in a unified cache only tags each cell with one more seq id, and evaluates only the rest.
Prefill is compute-bound (batching does not speed it up), so this is what makes many
conversations with a common header cheap.
"""

from __future__ import annotations

from collections import deque

from townhall.engine.core import LlamaCore
from townhall.engine.slots import Slot, SlotTable
from townhall.engine.states import common_prefix

MIN_SHARED = 32  # tokens: a shorter common prefix is not worth a cache entry or a wait
_RECENT_PROMPTS = 16  # prompts remembered to find what new ones have in common


class PrefixSharing:
    """Copies the longest held prefix into a slot, and keeps common prefixes cached.

    The cache lives in `count` sequences of its own, from seq id `first_seq` on, so a prefix
    outlives the requests that made it. Turned off (`enabled = False`), every request
    evaluates its own prompt (the benchmarks' baseline).
    """

    def __init__(self, core: LlamaCore, table: SlotTable, first_seq: int, count: int) -> None:
        self.core = core
        self.table = table
        self.entries = [Slot(first_seq + i) for i in range(count)]
        self._recent: deque[tuple[str | None, list[int]]] = deque(maxlen=_RECENT_PROMPTS)
        self.enabled = True
        self.shared_tokens = 0  # prompt tokens served by copied cells instead of evaluated
        self.shared_requests = 0

    def share(self, slot: Slot, prompt: list[int], keep: int, limit: int) -> int:
        """Replace the slot's cells by a longer prefix of `prompt` that another sequence holds;
        return its length, or 0 when none beats `keep` (the slot is then as it was, unless
        the copy proved unusable: then it is cleared and the caller places the agent again)."""
        import llama_cpp

        if not self.enabled:
            return 0
        donor, n = None, keep
        for other in [*self.table.slots, *self.entries]:
            if other is slot or not other.tokens:
                continue
            common = min(common_prefix(other.tokens, prompt), limit)
            if common > n:
                donor, n = other, common
        if donor is None:
            return 0
        core = self.core
        core.clear(slot.seq_id)
        llama_cpp.llama_memory_seq_cp(core.memory, donor.seq_id, slot.seq_id, 0, n)
        # Under a sliding window the donor may have let its early cells go: the next token
        # must still see the last window of positions.
        if not core.states.can_roll_back(core.ctx, n, slot.seq_id):
            core.clear(slot.seq_id)
            slot.tokens = []
            return 0
        slot.tokens = list(prompt[:n])
        if any(donor is entry for entry in self.entries):
            self.table.touch(donor)
        self.shared_tokens += n - keep
        self.shared_requests += 1
        return n

    def remember(self, agent: str | None, prompt: list[int], slot: Slot) -> None:
        """After a prefill: keep the longest prefix this prompt shares with a recent other
        agent's prompt in a cache entry, so later prompts starting alike copy it even
        when no live slot holds it any more."""
        import llama_cpp

        if not self.enabled:
            return
        common = max((common_prefix(tokens, prompt) for who, tokens in self._recent if who != agent or who is None),
                     default=0)
        self._recent.append((agent, prompt))
        n = min(common, len(slot.tokens), self.core.n_ctx // 2)
        if n < MIN_SHARED or slot.tokens[:n] != prompt[:n]:
            return
        if any(len(entry.tokens) >= n and entry.tokens[:n] == prompt[:n] for entry in self.entries):
            return
        # A shorter entry that this one extends serves nothing the longer one would not.
        extended = [e for e in self.entries if e.tokens and prompt[: len(e.tokens)] == e.tokens]
        empty = [e for e in self.entries if not e.tokens]
        entry = (extended or empty or [min(self.entries, key=lambda e: e.last_used)])[0]
        self.core.clear(entry.seq_id)
        llama_cpp.llama_memory_seq_cp(self.core.memory, slot.seq_id, entry.seq_id, 0, n)
        entry.tokens = list(prompt[:n])
        self.table.touch(entry)  # entries share the slots' clock: the least recently used goes first
