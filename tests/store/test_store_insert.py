"""`Store.insert_session`: a whole session written at once (what `townhall import` uses),
read back field for field from a real SQLite file, and refused over an existing id."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from store_support import HOSTILE, personas, record_debate

from townhall.engine.base import STAT_FIELDS, GenerationStats
from townhall.errors import StoreError
from townhall.store import Store
from townhall.domain.turns import TurnStatus


async def test_a_copied_session_reads_back_the_same(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db") as source:
        await record_debate(source, "orig", [("Ada", HOSTILE), ("Bo", "Wheat first.")])
        record, turns = source.get_session("orig"), source.turns("orig")
    copy = replace(record, summary=replace(record.summary, id="copy"))
    with Store.open(tmp_path / "b.db") as store:
        assert store.insert_session(copy, turns) == "copy"
        again = store.get_session("copy")
        assert again.as_dict() == copy.as_dict()
        assert [p.name for p in again.personas] == [p.name for p in personas()]
        back = store.turns("copy")
        assert back == turns and back[0].content == HOSTILE  # model text stored as data, never as SQL
        assert back[0].stats is not None and back[0].status is TurnStatus.COMPLETE
        with pytest.raises(StoreError, match="copy already exists"):
            store.insert_session(copy, turns)
        assert len(store.turns("copy")) == 2  # the refused write changed nothing


def test_store_columns_are_the_stats_fields() -> None:
    from townhall.store.records import STAT_COLUMNS

    assert STAT_COLUMNS == STAT_FIELDS == tuple(GenerationStats().as_dict())
