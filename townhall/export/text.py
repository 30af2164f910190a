"""`txt`: the plain `Name: text` log seed 004 kept, one turn per paragraph."""

from __future__ import annotations

from townhall.domain.text import terminal_safe
from townhall.export.common import EDITED, by_watcher, load, spoken
from townhall.store import Store


def render(store: Store, session_id: str, branch: int | None = None) -> str:
    loaded = load(store, session_id, branch)
    lines = []
    for turn in spoken(loaded.turns):
        suffix = " [interrupted]" if turn.status == "interrupted" else ""
        suffix += f" ({EDITED})" if by_watcher(turn) else ""
        lines.append(f"{terminal_safe(turn.speaker)}: {terminal_safe(turn.content.strip())}{suffix}")
    return "\n\n".join(lines) + ("\n" if lines else "")
