"""Every export format, read back by a real parser, with hostile text in the session."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from store_support import HOSTILE, record_debate
from townhall.errors import ConfigError
from townhall.export import FORMATS, export_all, export_session
from townhall.export.json_format import SessionExport
from townhall.store import Store

LINES = [
    ("Cy", "Order please. We begin."),
    ("Ada", "Steel is stronger."),
    ("Bo", HOSTILE),
    ("Ada", "Wood rots\nin the rain."),
]
# What a reader sees of the hostile text once control characters are neutralised.
HOSTILE_SHOWN = HOSTILE.replace("\x1b", "\ufffd")


@pytest.fixture
async def store(tmp_path: Path):
    store = Store.open(tmp_path / "th.db")
    await record_debate(store, "sess1", LINES, motion=f"Motion {HOSTILE}")
    yield store
    store.close()


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse_html(text: str) -> _Collector:
    collector = _Collector()
    collector.feed(text)
    collector.close()
    return collector


async def test_json_is_the_whole_session_and_validates(store: Store) -> None:
    data = json.loads(export_session(store, "sess", "json"))
    document = SessionExport.model_validate(data)
    assert (data["format"], data["version"], data["branch"]) == ("townhall.session", 4, 1)
    assert data["stances"] == [] and data["outcome"] is None  # this session never voted
    assert document.session.id == "sess1" and document.session.motion == f"Motion {HOSTILE}"
    assert [p.name for p in document.participants] == ["Ada", "Bo", "Cy"]
    assert [(t.index, t.speaker, t.content) for t in document.turns] == [(i, s, c) for i, (s, c) in enumerate(LINES)]
    assert document.turns[1].stats.prefill_tokens == 11 and document.turns[1].sampling.temperature == 0.7
    assert [e.type for e in document.events] == ["started", "ended"]
    assert document.session.spec["seed"] == 7


async def test_jsonl_is_one_chat_per_agent_from_its_point_of_view(store: Store) -> None:
    lines = export_session(store, "sess1", "jsonl").splitlines()
    chats = [json.loads(line)["messages"] for line in lines]
    assert len(chats) == 3  # Ada, Bo and the moderator Cy each spoke
    ada = chats[0]
    assert ada[0]["role"] == "system" and "You are Ada" in ada[0]["content"]
    assert [m["role"] for m in ada[1:]] == ["user", "assistant", "user", "assistant"]
    assert ada[1]["content"].endswith("Cy: Order please. We begin.")
    assert ada[2]["content"] == "Steel is stronger."
    assert ada[3]["content"] == f"Bo: {HOSTILE}".rstrip()
    assert ada[4]["content"] == "Wood rots\nin the rain."
    bo = chats[1]
    assert [m["role"] for m in bo] == ["system", "user", "assistant"]
    assert bo[-1]["content"] == HOSTILE.strip()
    assert "Ada: Steel is stronger." in bo[1]["content"]
    for chat in chats:
        assert chat[-1]["role"] == "assistant"
        roles = [m["role"] for m in chat[1:]]
        assert all(a != b for a, b in zip(roles, roles[1:]))  # alternating


async def test_sharegpt_has_conversations_from_value(store: Store) -> None:
    rows = [json.loads(line) for line in export_session(store, "sess1", "sharegpt").splitlines()]
    assert len(rows) == 3
    first = rows[0]["conversations"]
    assert [c["from"] for c in first] == ["system", "human", "gpt", "human", "gpt"]
    assert first[3]["value"] == f"Bo: {HOSTILE}".rstrip()


async def test_html_is_self_contained_and_everything_is_escaped(store: Store) -> None:
    page = export_session(store, "sess1", "html")
    parsed = _parse_html(page)
    tags = [t for t, _ in parsed.tags]
    assert "script" not in tags and "a" not in tags and "img" not in tags
    assert not any("src" in attrs or "href" in attrs for _, attrs in parsed.tags)  # nothing external
    csp = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    text = "".join(parsed.text)
    assert HOSTILE_SHOWN.strip() in text  # shown as text, literally
    assert "\x1b" not in page
    styles = [a.get("style", "") for _, a in parsed.tags if a.get("style")]
    assert any("#ff0000" in s for s in styles)  # Ada's own colour
    assert all("script" not in s and "}" not in s for s in styles)  # Bo's hostile colour was refused
    assert text.count("Wood rots\nin the rain.") == 1


async def test_markdown_renders_hostile_text_literally(store: Store) -> None:
    md = export_session(store, "sess1", "md")
    assert "\x1b" not in md
    rendered = MarkdownIt("commonmark").render(md)
    parsed = _parse_html(rendered)
    tags = [t for t, _ in parsed.tags]
    assert "script" not in tags and "a" not in tags and "img" not in tags
    assert tags.count("code") == 1 and tags.count("h1") == 1  # the session id; the title
    text = "".join(parsed.text)
    assert HOSTILE_SHOWN.strip() in text
    assert f"Motion {HOSTILE_SHOWN}".strip() in text
    assert "Ada:" in text and "Bo:" in text and "Cy (moderator):" in text  # speakers shown
    strong = [t for t in tags if t == "strong"]
    assert len(strong) == 1 + 3 + len(LINES)  # "Motion:", 3 participants, one per turn; none from the text


async def test_txt_is_name_colon_text(store: Store) -> None:
    txt = export_session(store, "sess1", "txt")
    blocks = txt.strip().split("\n\n")
    assert blocks[0] == "Cy: Order please. We begin."
    assert blocks[2] == f"Bo: {HOSTILE_SHOWN.strip()}"
    assert blocks[3] == "Ada: Wood rots\nin the rain."
    assert "\x1b" not in txt


async def test_all_sessions_as_jsonl_and_json_collection(store: Store) -> None:
    await record_debate(store, "sess2", [("Ada", "Second session.")], start_at=1_800_000_000.0)
    lines = export_all(store, "jsonl").splitlines()
    assert len(lines) == 3 + 1
    assert json.loads(lines[-1])["messages"][-1]["content"] == "Second session."
    collection = json.loads(export_all(store, "json"))
    assert [s["session"]["id"] for s in collection["sessions"]] == ["sess1", "sess2"]
    with pytest.raises(ConfigError, match="--all"):
        export_all(store, "html")


async def test_unknown_format_is_one_line(store: Store) -> None:
    with pytest.raises(ConfigError, match="unknown export format 'pdf'"):
        export_session(store, "sess1", "pdf")
    assert set(FORMATS) == {"md", "json", "jsonl", "sharegpt", "html", "txt", "dpo"}
