"""FTS5 search: matches across sessions, highlighted snippets, and bad queries as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from store_support import HOSTILE, record_debate
from townhall.store import SearchQueryError, Store


@pytest.fixture
async def store(tmp_path: Path):
    store = Store.open(tmp_path / "th.db")
    await record_debate(store, "s1", [("Ada", "The bridge needs steel cables"), ("Bo", "Wheat prices are low")],
                        start_at=100.0)
    await record_debate(store, "s2", [("Bo", "A wooden bridge is cheaper"), ("Ada", HOSTILE)], start_at=200.0,
                        motion="Fix the roads")
    yield store
    store.close()


def _highlighted(hit) -> list[str]:
    return [hit.snippet[a:b] for a, b in hit.highlights]


async def test_word_matches_in_every_session_with_highlight(store: Store) -> None:
    hits = store.search("bridge")
    assert sorted((h.session_id, h.speaker, h.turn_index) for h in hits) == [("s1", "Ada", 0), ("s2", "Bo", 0)]
    for hit in hits:
        assert _highlighted(hit) == ["bridge"]
        assert "\ue000" not in hit.snippet and "\ue001" not in hit.snippet
    labels = {h.session_id: h.session_label for h in hits}
    assert labels == {"s1": "Build a new bridge over the river", "s2": "Fix the roads"}


async def test_phrase_prefix_boolean_and_speaker_column(store: Store) -> None:
    assert [h.session_id for h in store.search('"wooden bridge"')] == ["s2"]
    assert {h.snippet for h in store.search("chea*")} == {"A wooden bridge is cheaper"}
    assert [h.speaker for h in store.search("bridge NOT steel")] == ["Bo"]
    assert [h.turn_index for h in store.search("speaker:Bo AND wheat")] == [1]
    assert len(store.search("bridge", limit=1)) == 1


async def test_hostile_text_is_searchable_and_returned_verbatim(store: Store) -> None:
    [hit] = store.search('"DROP TABLE"')
    assert "<script>" in hit.snippet and _highlighted(hit) == ["DROP TABLE"]
    assert store.connection.db["turns"].count == 4  # the SQL in the text did nothing


@pytest.mark.parametrize("query", ['bridge"', "don't", "AND", "(bridge", "nosuchcolumn:bridge", "   "])
async def test_malformed_queries_are_one_clear_line(store: Store, query: str) -> None:
    with pytest.raises(SearchQueryError) as info:
        store.search(query)
    message = str(info.value)
    assert "\n" not in message
    assert "query" in message
    assert "OperationalError" not in message


async def test_quoted_apostrophe_works(store: Store, tmp_path: Path) -> None:
    await record_debate(store, "s3", [("Bo", "I don't agree")], start_at=300.0)
    assert [h.session_id for h in store.search('"don\'t"')] == ["s3"]
