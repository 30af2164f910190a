"""`dpo`: preference pairs for DPO-style training, one JSON line per pair.

Regenerating or editing a turn keeps what was said before as an alternative (a sibling in
the tree), so a branch's path says which text the watcher chose. For each turn on the
chosen branch's path, each alternative said by the same speaker becomes one pair in the
conversational shape TRL's DPOTrainer reads:

    {"prompt": [system, user, ...], "chosen": [{"role": "assistant", ...}],
     "rejected": [{"role": "assistant", ...}]}

`prompt` is the debate up to that turn from the speaker's point of view, with the roles of
the `jsonl` export (`common.point_of_view`). Only complete, non-empty turns take part
(degenerate, skipped, failed or cut-off alternatives are skipped), and a watcher's edit is
never the rejected side: the watcher's words are chosen over the model's, not the reverse.
"""

from __future__ import annotations


from townhall.domain.text import json_line
from townhall.export.common import by_watcher, load, point_of_view, usable_turns
from townhall.store import Store


def render(store: Store, session_id: str, branch: int | None = None) -> str:
    loaded = load(store, session_id, branch)
    tree = store.tree(loaded.record.id)
    motion = loaded.record.summary.motion
    lines = []
    for position, chosen in enumerate(loaded.turns):
        persona = loaded.personas.get(chosen.speaker)
        if persona is None or not usable_turns([chosen]):
            continue
        rejected = [
            alt for alt in usable_turns(tree.alternatives(chosen))
            if alt.node != chosen.node and alt.speaker == chosen.speaker and not by_watcher(alt)
            and alt.content.strip() != chosen.content.strip()
        ]
        if not rejected:
            continue
        prompt = point_of_view(persona, motion, usable_turns(loaded.turns[:position]))
        for alt in rejected:
            pair = {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen.content.strip()}],
                "rejected": [{"role": "assistant", "content": alt.content.strip()}],
            }
            lines.append(json_line(pair))
    return "".join(lines)
