"""Store.fork/edit_turn/switch_branch apply the branch service's op and hand its events to the
recorder: the record of an op made offline is the record a live run makes, written all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from store_support import record_debate
from townhall.domain.events import Event, TurnFinished
from townhall.errors import StoreError
from townhall.store import Store
from townhall.store.recorder import Recorder


def _types(store: Store, session_id: str) -> list[str]:
    return [e.type for e in store.get_session(session_id).events]


async def test_fork_and_edit_write_the_events_a_live_op_writes(tmp_path: Path) -> None:
    with Store.open(tmp_path / "th.db") as store:
        await record_debate(store, "s", [("Ada", "one"), ("Bo", "two")], end="stopped")
        before = _types(store, "s")
        assert store.fork("s", at=0) == 2
        assert _types(store, "s")[len(before):] == ["branch", "switch"]
        assert store.edit_turn("s", 1, "deux", branch=1) == 3
        assert _types(store, "s")[len(before) + 2:] == ["branch", "switch"]
        edited = store.turns("s")[1]
        assert (edited.content, edited.status, edited.branch) == ("deux", "complete", 3)
        assert store.tree("s").branches[3].head == edited.node  # the branch ends at the edit
        store.switch_branch("s", 3)  # already current: nothing to write
        assert _types(store, "s")[len(before) + 4:] == []


async def test_a_failure_half_way_through_an_op_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    call = Recorder.__call__

    def fail_on_finish(self: Recorder, event: Event) -> None:
        if isinstance(event, TurnFinished):
            raise StoreError("disk full")
        call(self, event)

    with Store.open(tmp_path / "th.db") as store:
        await record_debate(store, "s", [("Ada", "one"), ("Bo", "two")], end="stopped")
        before = _types(store, "s")
        monkeypatch.setattr(Recorder, "__call__", fail_on_finish)
        with pytest.raises(StoreError, match="disk full"):
            store.edit_turn("s", 1, "deux")
        tree = store.tree("s")
        assert tree.numbers() == [1] and tree.current == 1 and len(tree.nodes) == 2
        assert _types(store, "s") == before
