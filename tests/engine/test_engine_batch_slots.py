"""Slot bookkeeping and batch planning of the batched local engine, without a model."""

from __future__ import annotations

import pytest

from townhall.engine.config import EngineConfig
from townhall.engine.slots import Chunk, SlotTable, plan_batch


def test_an_agent_gets_its_resident_slot_back() -> None:
    table = SlotTable(2)
    slot, resident = table.claim("Ada")  # type: ignore[misc]
    assert not resident and slot.agent == "Ada" and slot.busy
    slot.tokens = [1, 2, 3]
    table.release(slot, keep=True)
    table.claim("Bram")
    again, resident = table.claim("Ada")  # type: ignore[misc]
    assert again is slot and resident and again.tokens == [1, 2, 3]


def test_a_busy_agent_is_refused_and_all_busy_means_wait() -> None:
    table = SlotTable(2)
    table.claim("Ada")
    assert table.busy_agent("Ada") and not table.busy_agent("Bram")
    with pytest.raises(RuntimeError, match="already has a request"):
        table.claim("Ada")
    table.claim(None)
    assert not table.can_claim() and table.claim("Bram") is None


def test_free_slots_go_before_evicting_and_eviction_takes_the_least_recently_used() -> None:
    table = SlotTable(3)
    for name in ("Ada", "Bram"):
        slot, _ = table.claim(name)  # type: ignore[misc]
        slot.tokens = [7]
        table.release(slot, keep=True)
    third, resident = table.claim("Cleo")  # type: ignore[misc]
    assert not resident and third.seq_id == 2  # the empty slot, not Ada's or Bram's
    table.release(third, keep=True)
    again, _ = table.claim("Ada")  # Ada is now the most recently used
    table.release(again, keep=True)
    taken, resident = table.claim("Dev")  # type: ignore[misc]
    assert not resident and taken.seq_id == 1 and taken.tokens == []  # Bram's, the oldest
    assert table.resident("Bram") is None and table.resident("Ada") is not None


def test_one_off_requests_leave_nothing_resident() -> None:
    table = SlotTable(1)
    slot, _ = table.claim(None)  # type: ignore[misc]
    slot.tokens = [1, 2]
    table.release(slot, keep=False)
    assert slot.agent is None and slot.tokens == [] and table.can_claim()


def test_evict_forgets_only_idle_agents() -> None:
    table = SlotTable(2)
    busy, _ = table.claim("Ada")  # type: ignore[misc]
    assert table.evict("Ada") is None and busy.agent == "Ada"
    table.release(busy, keep=True)
    assert table.evict("Ada") is busy and table.resident("Ada") is None
    assert table.evict("nobody") is None


def test_plan_puts_every_decoding_token_first_then_prefill_chunks() -> None:
    plan = plan_batch([(0, 300), (1, 1), (2, 400), (3, 1)], n_batch=512)
    assert plan == [Chunk(1, 1, True), Chunk(3, 1, True), Chunk(0, 300, True), Chunk(2, 210, False)]
    assert sum(c.count for c in plan) == 512


def test_plan_of_nothing_and_of_a_tight_batch() -> None:
    assert plan_batch([], 512) == []
    assert plan_batch([(0, 0)], 512) == []
    assert plan_batch([(0, 1), (1, 1), (2, 5)], n_batch=2) == [Chunk(0, 1, True), Chunk(1, 1, True)]
    with pytest.raises(ValueError):
        plan_batch([(0, 1)], 0)


def test_parallel_setting_is_validated_and_reaches_the_engine() -> None:
    from townhall.engine.local import LocalEngine

    assert EngineConfig().parallel == 1 and EngineConfig(parallel=8).parallel == 8
    assert LocalEngine.from_config(EngineConfig(parallel=4)).parallel == 4
    with pytest.raises(ValueError):
        LocalEngine(parallel=0)
    with pytest.raises(ValueError):
        EngineConfig(parallel=0)
