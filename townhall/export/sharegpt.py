"""`sharegpt`: the jsonl chats in ShareGPT's `conversations` / `from` / `value` shape, one per line."""

from __future__ import annotations


from townhall.domain.text import json_line
from townhall.export.common import agent_conversations, load
from townhall.store import Store

_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def render(store: Store, session_id: str, branch: int | None = None) -> str:
    lines = []
    for chat in agent_conversations(load(store, session_id, branch)):
        conversation = [{"from": _FROM[m["role"]], "value": m["content"]} for m in chat]
        lines.append(json_line({"conversations": conversation}))
    return "".join(lines)
