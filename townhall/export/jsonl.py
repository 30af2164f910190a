"""`jsonl`: training data, one OpenAI-style `{"messages": [...]}` chat per line, one per agent.

See `common.agent_conversations` for the point-of-view rules.
"""

from __future__ import annotations

import json

from townhall.export.common import agent_conversations, load
from townhall.store import Store


def render(store: Store, session_id: str) -> str:
    chats = agent_conversations(load(store, session_id))
    return "".join(json.dumps({"messages": chat}, ensure_ascii=False) + "\n" for chat in chats)
