"""Every export writes exactly one branch (the current one unless `branch` names another) with
that branch's outcome and stances, marks the watcher's edits, and JSON v3 imports as one branch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store_support import BRANCHED_ID, record_branched
from townhall.export import FORMATS, export_session, import_json
from townhall.store import Store
from townhall.domain.turns import WATCHER


@pytest.fixture
async def store(tmp_path: Path):
    store = Store.open(tmp_path / "th.db")
    await record_branched(store)
    yield store
    store.close()


ONLY = {  # text that belongs to exactly one branch's path
    1: "Floods are rare here",
    2: "Concrete is the answer",
    4: "Wood is cheaper and greener",
}


@pytest.mark.parametrize("fmt", ["md", "html", "txt", "json", "jsonl", "sharegpt"])
async def test_each_format_writes_one_branch(store: Store, fmt: str) -> None:
    for number in (None, 1, 2, 4):
        text = export_session(store, BRANCHED_ID, fmt, branch=number)
        chosen = 4 if number is None else number
        for branch, words in ONLY.items():
            assert (words in text) == (branch == chosen), (fmt, number, words)
        assert "the the the" not in text  # branch 3's degenerate turn is on no exported path
    assert set(FORMATS) >= {"md", "html", "txt", "json", "jsonl", "sharegpt", "dpo"}


async def test_edits_are_marked_as_the_watchers(store: Store) -> None:
    assert "**Bo**: *(edited by the watcher)*" in export_session(store, BRANCHED_ID, "md")
    assert "Bo: Wood is cheaper and greener (edited by the watcher)" in export_session(store, BRANCHED_ID, "txt")
    assert '<span class="status">edited by the watcher</span>' in export_session(store, BRANCHED_ID, "html")
    assert "edited by the watcher" not in export_session(store, BRANCHED_ID, "md", branch=2)
    chats = [json.loads(line)["messages"] for line in export_session(store, BRANCHED_ID, "jsonl").splitlines()]
    bo = next(c for c in chats if c[0]["content"].startswith("You are Bo"))
    assert bo[-1] == {"role": "assistant", "content": "Wood is cheaper and greener", "author": WATCHER}
    ada = next(c for c in chats if c[0]["content"].startswith("You are Ada"))
    assert all("author" not in m for m in ada)  # Ada's chat ends on her own turn, before the edit
    assert "- Branch 4 of 4" in export_session(store, BRANCHED_ID, "md")


async def test_outcome_and_stances_follow_the_branch(store: Store) -> None:
    voted = json.loads(export_session(store, BRANCHED_ID, "json", branch=2))
    assert voted["branch"] == 2 and voted["outcome"]["result"] == "tied"
    assert [s["turn_index"] for s in voted["stances"]] == [1, 2]
    current = json.loads(export_session(store, BRANCHED_ID, "json"))
    assert current["branch"] == 4 and current["outcome"] is None and current["stances"] == []
    assert "Minutes of the concrete branch" in export_session(store, BRANCHED_ID, "md", branch=2)
    assert "Minutes" not in export_session(store, BRANCHED_ID, "md")


async def test_json_v3_carries_the_tree_fields_and_imports_as_one_branch(store: Store) -> None:
    data = json.loads(export_session(store, BRANCHED_ID, "json", branch=2))
    assert data["version"] == 4  # version 4 added source, addressed and answers
    turns = data["turns"]
    assert [t["branch"] for t in turns] == [1, 1, 2] and turns[0]["parent"] is None
    assert [t["parent"] for t in turns[1:]] == [turns[0]["node"], turns[1]["node"]]
    assert {t["author"] for t in turns} == {None} and {t["scripted"] for t in turns} == {False}
    edited = json.loads(export_session(store, BRANCHED_ID, "json"))["turns"][1]
    assert edited["author"] == WATCHER
    new_id = import_json(store, json.dumps(data))
    tree = store.tree(new_id)
    assert tree.numbers() == [1] and [t.content for t in tree.path()] == [t["content"] for t in turns]
    assert [t.node for t in tree.path()] == [t["node"] for t in turns]  # nodes kept, one branch
    again = json.loads(export_session(store, new_id, "json"))
    assert again["branch"] == 1 and [t["branch"] for t in again["turns"]] == [1, 1, 1]
    assert again["outcome"] == data["outcome"] and again["stances"] == data["stances"]


async def test_a_version_2_document_still_imports(store: Store) -> None:
    data = json.loads(export_session(store, BRANCHED_ID, "json", branch=2))
    data["version"] = 2
    del data["branch"]
    for turn in data["turns"]:
        for key in ("node", "parent", "branch", "author", "phase", "scripted"):
            del turn[key]
    new_id = import_json(store, json.dumps(data))
    turns = store.turns(new_id)
    assert [t.content for t in turns] == ["Steel bridges last", "Wooden bridges are cheap", "Concrete is the answer"]
    assert turns[2].parent == turns[1].node and len({t.node for t in turns}) == 3
