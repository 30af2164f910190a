"""`import`: the JSON export read back; export -> import -> export is the same but for ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store_support import HOSTILE, record_debate
from townhall.errors import ConfigError
from townhall.export import export_all, export_session, import_documents, import_json
from townhall.store import Store


@pytest.fixture
async def store(tmp_path: Path):
    store = Store.open(tmp_path / "th.db")
    await record_debate(store, "orig", [("Cy", "Begin."), ("Ada", HOSTILE), ("Bo", "Agreed — ünïcödé ✓")])
    yield store
    store.close()


async def test_round_trip_equal_but_for_ids(store: Store, tmp_path: Path) -> None:
    first = export_session(store, "orig", "json")
    new_id = import_json(store, first)
    assert new_id != "orig"
    second = export_session(store, new_id, "json")
    a, b = json.loads(first), json.loads(second)
    assert (a["session"].pop("id"), b["session"].pop("id")) == ("orig", new_id)
    assert a == b
    # and into a fresh database too
    other = Store.open(tmp_path / "other.db")
    third_id = import_json(other, first)
    c = json.loads(export_session(other, third_id, "json"))
    c["session"].pop("id")
    assert c == a
    assert other.search("ünïcödé")[0].session_id == third_id  # imported turns are indexed
    other.close()


async def test_collection_from_export_all_imports_every_session(store: Store, tmp_path: Path) -> None:
    await record_debate(store, "second", [("Bo", "Later.")], start_at=1_900_000_000.0)
    other = Store.open(tmp_path / "other.db")
    ids = import_documents(other, export_all(store, "json"))
    assert [other.get_session(i).summary.motion for i in ids] == ["Build a new bridge over the river"] * 2
    assert [len(other.turns(i)) for i in ids] == [3, 1]
    other.close()


def _bad_variants(good: dict) -> list[tuple[str, str]]:
    newer = {**good, "version": 99}
    missing = {**good, "session": {k: v for k, v in good["session"].items() if k != "motion"}}
    bad_status = json.loads(json.dumps(good))
    bad_status["turns"][0]["status"] = "exploded"
    repeated = json.loads(json.dumps(good))
    repeated["turns"][1]["index"] = 0
    return [
        ("{not json", "not JSON"),
        (json.dumps([1, 2]), "not a Townhall JSON export"),
        (json.dumps({**good, "format": "other"}), "not a Townhall JSON export"),
        (json.dumps(newer), "newer than this Townhall"),
        (json.dumps(missing), "session.motion"),
        (json.dumps(bad_status), "turns.0.status"),
        (json.dumps(repeated), "turn indices repeat"),
    ]


async def test_bad_files_are_one_line_and_change_nothing(store: Store) -> None:
    good = json.loads(export_session(store, "orig", "json"))
    for text, expected in _bad_variants(good):
        with pytest.raises(ConfigError) as info:
            import_json(store, text, source="bad.json")
        message = str(info.value)
        assert message.startswith("bad.json: ") and expected in message and "\n" not in message, message
    assert [s.id for s in store.list_sessions()] == ["orig"]
