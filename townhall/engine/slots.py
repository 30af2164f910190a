"""Which llama.cpp sequence holds whose tokens, for the batched local engine.

Pure bookkeeping (no llama.cpp here) so the rules can be tested without a model:
- a context built for `parallel` sequences has that many slots, seq ids 0..parallel-1;
- an agent's tokens stay in its slot after its turn (resident), so its next turn needs no
  restore, until another request needs the slot: then the least recently used idle slot is
  taken (its agent's state was saved when its turn ended, so nothing is lost);
- an agent is in at most one slot, and two requests for one agent never run at once.

`plan_batch` decides what one `llama_decode` carries: every decoding sequence's one token
first (they are waiting on it), then prefill chunks in arrival order, up to `n_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Slot:
    """One llama.cpp sequence: the tokens its KV cells hold and whose they are."""

    seq_id: int
    agent: str | None = None  # whose tokens these are (None: a one-off's, or nobody's)
    tokens: list[int] = field(default_factory=list)
    busy: bool = False  # a request is running in it
    last_used: int = 0


class SlotTable:
    """The slots of one context; every method runs on the llama thread."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("a context has at least one sequence")
        self.slots = [Slot(i) for i in range(n)]
        self._clock = 0

    def resident(self, agent: str | None) -> Slot | None:
        """The slot that still holds this agent's tokens, busy or not."""
        if agent is None:
            return None
        return next((s for s in self.slots if s.agent == agent), None)

    def busy_agent(self, agent: str | None) -> bool:
        slot = self.resident(agent)
        return slot is not None and slot.busy

    def can_claim(self) -> bool:
        return any(not s.busy for s in self.slots)

    def claim(self, agent: str | None) -> tuple[Slot, bool] | None:
        """A slot for this agent's request, marked busy, or None while all are busy.

        Returns the slot and whether it still holds this agent's tokens (no restore needed).
        A slot taken from another agent comes back emptied in the bookkeeping; the caller
        clears its cells.
        """
        own = self.resident(agent)
        if own is not None:
            if own.busy:
                raise RuntimeError(f"agent {agent!r} already has a request running")
            self._use(own)
            return own, True
        idle = [s for s in self.slots if not s.busy]
        if not idle:
            return None
        empty = [s for s in idle if s.agent is None and not s.tokens]
        slot = empty[0] if empty else min(idle, key=lambda s: s.last_used)
        slot.agent = agent
        slot.tokens = []
        self._use(slot)
        return slot, False

    def release(self, slot: Slot, *, keep: bool) -> None:
        """The request in `slot` ended; `keep` leaves its tokens resident for the agent's next turn."""
        slot.busy = False
        if not keep:
            slot.agent = None
            slot.tokens = []

    def evict(self, agent: str) -> Slot | None:
        """Forget where an idle agent's tokens are; returns the slot whose cells to clear."""
        slot = self.resident(agent)
        if slot is None or slot.busy:
            return None
        slot.agent = None
        slot.tokens = []
        return slot

    def touch(self, slot: Slot) -> None:
        """Mark `slot` (or a sequence kept beside the slots, on the same clock) used now."""
        self._clock += 1
        slot.last_used = self._clock

    def _use(self, slot: Slot) -> None:
        slot.busy = True
        self.touch(slot)


@dataclass(frozen=True)
class Chunk:
    """Part of one sequence's pending tokens that goes into this step's batch."""

    key: int  # the caller's handle for the sequence (its slot's seq id)
    count: int  # how many of its pending tokens, from the front
    completes: bool  # whether these are the last pending ones (its logits are wanted)


def plan_batch(pending: Sequence[tuple[int, int]], n_batch: int) -> list[Chunk]:
    """Split pending work `(key, tokens waiting)` into one batch of at most `n_batch` tokens.

    Single tokens (decoding sequences) go first, so a long prefill never stalls the others'
    streams; prefills follow in the given order, the last one possibly cut short.
    """
    if n_batch < 1:
        raise ValueError("n_batch must be at least 1")
    chunks: list[Chunk] = []
    room = n_batch
    for key, waiting in pending:
        if waiting == 1 and room:
            chunks.append(Chunk(key, 1, True))
            room -= 1
    for key, waiting in pending:
        if waiting > 1 and room:
            take = min(waiting, room)
            chunks.append(Chunk(key, take, take == waiting))
            room -= take
    return chunks
