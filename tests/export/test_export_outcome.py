"""The outcome and the minutes in every readable export (Markdown, HTML, JSON with the
stance series), hostile minutes shown as text, and the JSON round trip keeping them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from test_export_formats import _parse_html
from store_support import HOSTILE, record_debate
from townhall.export import export_session, import_json
from townhall.store import Store

LINES = [("Cy", "We begin."), ("Ada", "Steel is stronger."), ("Bo", "Wood is cheaper.")]
MINUTES = f"Minutes of the meeting\n- Ada voted for, because {HOSTILE}"


@pytest.fixture
async def store(tmp_path: Path):
    store = Store.open(tmp_path / "th.db")
    await record_debate(store, "voted", LINES, outcome=True, minutes=MINUTES)
    yield store
    store.close()


async def test_markdown_has_the_outcome_and_minutes_as_literal_text(store: Store) -> None:
    text = export_session(store, "voted", "md")
    assert "## Outcome" in text and "## Minutes" in text
    html = MarkdownIt().render(text)
    assert "<script>" not in html and "&lt;script&gt;alert" in html and "<strong>bold</strong>" not in html
    assert "The vote is tied, 1 to 1." in html and "(1 for, 1 against)" in html
    assert "Ada: for (P(for) 0.70)" in html and "Bo: against (P(for) 0.35)" in html


async def test_html_has_the_outcome_and_minutes_escaped(store: Store) -> None:
    page = export_session(store, "voted", "html")
    parsed = _parse_html(page)
    assert "script" not in [tag for tag, _ in parsed.tags]
    text = "".join(parsed.text)
    assert "Outcome" in text and "The vote is tied, 1 to 1." in text and "Minutes of the meeting" in text
    assert "<script>alert('x')</script>" in text  # shown as text, never as markup


async def test_json_carries_stances_and_outcome_and_round_trips(store: Store, tmp_path: Path) -> None:
    first = export_session(store, "voted", "json")
    data = json.loads(first)
    assert data["outcome"]["result"] == "tied" and data["outcome"]["minutes"] == MINUTES
    assert [v["agent"] for v in data["outcome"]["votes"]] == ["Ada", "Bo"]
    assert len(data["stances"]) == 4 and data["stances"][0] == {
        **data["stances"][0], "agent": "Ada", "turn_index": 1, "method": "logits"}
    new_id = import_json(store, first)
    second = json.loads(export_session(store, new_id, "json"))
    data["session"].pop("id"), second["session"].pop("id")
    assert second == data
    assert {h.session_id for h in store.search("alert")} >= {"voted", new_id}


async def test_a_version_1_document_still_imports(store: Store) -> None:
    data = json.loads(export_session(store, "voted", "json"))
    data["version"] = 1
    del data["stances"], data["outcome"]
    new_id = import_json(store, json.dumps(data))
    assert store.outcome_of(new_id) is None and store.stances_of(new_id) == []
