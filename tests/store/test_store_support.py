"""The shared store helpers (tests/store_support.py) record what they claim to."""

from __future__ import annotations

import asyncio
from pathlib import Path

from store_support import open_store, record_debate


def test_helpers_record_a_debate(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    asyncio.run(record_debate(store, "s1", [("Ada", "Hello there"), ("Bo", "Hi")]))
    assert [t.content for t in store.turns("s1")] == ["Hello there", "Hi"]
    store.close()
