"""`jsonl`: training data, one OpenAI-style `{"messages": [...]}` chat per line, one per agent.

See `common.agent_conversations` for the point-of-view rules. A message holding text the
watcher wrote (an edit) carries `"author": "watcher"`; others have no `author` key.
"""

from __future__ import annotations


from townhall.domain.text import json_line
from townhall.export.common import agent_conversations, load
from townhall.store import Store


def render(store: Store, session_id: str, branch: int | None = None) -> str:
    chats = agent_conversations(load(store, session_id, branch))
    return "".join(json_line({"messages": chat}) for chat in chats)
