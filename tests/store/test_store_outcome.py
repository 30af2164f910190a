"""Stances, the closing ballot and the minutes in the record (schema 3): written by the
recorder from the scheduler's events, read back by `stances_of` / `outcome_of`, searched,
carried through an import, and a version-2 database upgraded in place."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from store_support import HOSTILE, open_store, record_debate
from townhall.store import Store
from townhall.store.database import latest_version, migrations

LINES = [("Ada", "The ferry takes an hour."), ("Bo", "The bridge costs too much."),
         ("Ada", "Time is money too."), ("Bo", "Taxes would double.")]


def test_stances_outcome_and_minutes_are_recorded_and_read_back(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    asyncio.run(record_debate(store, "s1", LINES, outcome=True))
    stances = store.stances_of("s1")
    assert [(s.agent, s.turn_index) for s in stances] == [
        ("Ada", 0), ("Bo", 0), ("Ada", 1), ("Bo", 1), ("Ada", 2), ("Bo", 2), ("Ada", 3), ("Bo", 3)]
    assert stances[0].p_for == 0.8 and stances[0].method == "logits" and stances[-1].round == 1
    outcome = store.outcome_of("s1")
    assert outcome is not None
    assert outcome.result == "tied" and (outcome.votes_for, outcome.votes_against) == (1, 1)
    assert [(v.agent, v.choice, v.p_for) for v in outcome.votes] == [("Ada", "for", 0.7), ("Bo", "against", 0.35)]
    assert outcome.announcement == "The vote is tied, 1 to 1."
    assert outcome.minutes is not None and "ferry is slow" in outcome.minutes
    assert outcome.tally == "1 for, 1 against"
    types = [e.type for e in store.get_session("s1").events]
    assert "outcome" in types
    store.close()


def test_session_without_a_vote_has_no_outcome_and_no_stances(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    asyncio.run(record_debate(store, "s0", LINES))
    assert store.stances_of("s0") == []
    assert store.outcome_of("s0") is None
    store.close()


def test_minutes_are_searchable_and_deleting_the_session_removes_them(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    asyncio.run(record_debate(store, "s1", LINES, outcome=True, minutes="Minutes: the zeppelin question was settled."))
    hits = store.search("zeppelin")
    assert [(h.session_id, h.kind, h.turn_index, h.speaker) for h in hits] == [("s1", "minutes", -1, "Minutes")]
    assert "zeppelin" in hits[0].snippet and hits[0].highlights
    assert store.search("speaker:Ada ferry")  # a column filter searches turns only, and still works
    store.delete("s1")
    assert store.search("zeppelin") == []
    assert store.connection.query("SELECT COUNT(*) AS n FROM stances")[0]["n"] == 0
    store.close()


def test_hostile_minutes_are_stored_as_plain_text(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    asyncio.run(record_debate(store, "s1", LINES, outcome=True, minutes=HOSTILE))
    outcome = store.outcome_of("s1")
    assert outcome is not None and outcome.minutes == HOSTILE
    assert store.turns("s1")  # the DROP TABLE in the minutes did nothing
    store.close()


def test_import_keeps_stances_and_outcome(tmp_path: Path) -> None:
    source = open_store(tmp_path, "a.db")
    asyncio.run(record_debate(source, "s1", LINES, outcome=True))
    record, turns = source.get_session("s1"), source.turns("s1")
    stances, outcome = source.stances_of("s1"), source.outcome_of("s1")
    source.close()
    from dataclasses import replace

    target = open_store(tmp_path, "b.db")
    record = replace(record, summary=replace(record.summary, id="copy"))
    target.insert_session(record, turns, stances=stances, outcome=outcome)
    assert [(s.agent, s.p_for) for s in target.stances_of("copy")] == [(s.agent, s.p_for) for s in stances]
    copied = target.outcome_of("copy")
    assert copied is not None and outcome is not None
    assert copied.as_dict() == outcome.as_dict()
    target.close()


def test_v2_database_upgrades_in_place_to_the_outcome_schema(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    for step in migrations()[:2]:  # the schema as Townhall before the stance probe built it
        conn.executescript(step.sql())
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO sessions(id, motion, spec, created_at, updated_at, status) "
                 "VALUES ('old2', 'Old motion', '{}', 1, 1, 'finished')")
    conn.execute("INSERT INTO turns(session_id, turn_index, speaker, kind, content, status) "
                 "VALUES ('old2', 0, 'Ada', 'agent', 'the aqueduct leaks', 'complete')")
    conn.commit()
    conn.close()

    store = Store.open(path)
    assert store.schema_version() == latest_version() >= 3
    assert [t.content for t in store.turns("old2")] == ["the aqueduct leaks"]
    assert store.outcome_of("old2") is None and store.stances_of("old2") == []
    assert [h.session_id for h in store.search("aqueduct")] == ["old2"]
    asyncio.run(record_debate(store, "new", LINES, outcome=True, minutes="The aqueduct minutes."))
    assert {h.kind for h in store.search("aqueduct")} == {"agent", "minutes"}
    store.close()
