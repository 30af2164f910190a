"""`export --format dpo`: preference pairs from a real SQLite file holding a tree of turns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store_support import BRANCHED_ID, record_branched, record_debate
from townhall.export import export_all, export_session
from townhall.store import Store


@pytest.fixture
async def store(tmp_path: Path):
    store = Store.open(tmp_path / "dpo.db")
    await record_branched(store)
    yield store
    store.close()


def _pairs(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


async def test_the_chosen_path_against_the_same_speakers_alternatives(store: Store) -> None:
    [pair] = _pairs(export_session(store, BRANCHED_ID, "dpo", branch=2))
    assert set(pair) == {"prompt", "chosen", "rejected"}
    assert pair["chosen"] == [{"role": "assistant", "content": "Concrete is the answer"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "Steel wins in floods"}]  # not the degenerate one
    roles = [m["role"] for m in pair["prompt"]]
    assert roles == ["system", "user", "assistant", "user"]  # Ada's point of view, as in the jsonl export
    assert pair["prompt"][0]["content"].startswith("You are Ada, Engineer.")
    assert pair["prompt"][2:] == [{"role": "assistant", "content": "Steel bridges last"},
                                  {"role": "user", "content": "Bo: Wooden bridges are cheap"}]
    # branch 1 chose the first reply; the same two texts swap sides
    [first] = _pairs(export_session(store, BRANCHED_ID, "dpo", branch=1))
    assert (first["chosen"][0]["content"], first["rejected"][0]["content"]) == ("Steel wins in floods",
                                                                               "Concrete is the answer")
    assert first["prompt"] == pair["prompt"]


async def test_a_watchers_edit_is_chosen_never_rejected(store: Store) -> None:
    [edit] = _pairs(export_session(store, BRANCHED_ID, "dpo"))  # the current branch: the edit of turn 1
    assert edit["chosen"] == [{"role": "assistant", "content": "Wood is cheaper and greener"}]
    assert edit["rejected"] == [{"role": "assistant", "content": "Wooden bridges are cheap"}]
    assert [m["role"] for m in edit["prompt"]] == ["system", "user"]
    assert edit["prompt"][0]["content"].startswith("You are Bo, Farmer.")
    assert edit["prompt"][1]["content"].endswith("\n\nAda: Steel bridges last")
    # on branch 2 turn 1 is the model's original, and its sibling is the watcher's edit: no pair
    assert all(p["chosen"][0]["content"] != "Wooden bridges are cheap"
               for p in _pairs(export_session(store, BRANCHED_ID, "dpo", branch=2)))
    # a degenerate turn on the chosen path makes no pair either
    assert export_session(store, BRANCHED_ID, "dpo", branch=3) == ""


async def test_a_session_without_alternatives_has_no_pairs_and_all_concatenates(store: Store) -> None:
    await record_debate(store, "flat", [("Ada", "one"), ("Bo", "two")])
    assert export_session(store, "flat", "dpo") == ""
    store.edit_turn("flat", 1, "two, better")
    lines = _pairs(export_all(store, "dpo"))
    assert [p["chosen"][0]["content"] for p in lines] == ["Wood is cheaper and greener", "two, better"]
