"""One conversation, one line: the generate output's default shape.

The exports write one chat per participant (each one's point of view), so a run of
two speakers wrote every conversation twice, once with each as the assistant; as
training data that teaches both sides at once. Here one speaker is the assistant
(`assistant` in the config, e.g. the teacher) and everyone else is the user: with one
other speaker their words stand alone, with several each line keeps its `Name:` so
the chat still says who spoke. `--per-speaker` keeps the exports' shape.
"""

from __future__ import annotations

import json

from townhall.export import FORMATS
from townhall.export.common import Loaded, load, persona_prompt
from townhall.store import Store
from townhall.domain.turns import TurnStatus

_SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def chat(loaded: Loaded, assistant: str) -> list[dict[str, str]]:
    """The conversation as `assistant` sees it, ending on its last turn; [] if it never spoke."""
    persona = loaded.personas.get(assistant)
    usable = [t for t in loaded.turns if t.content.strip() and t.status == TurnStatus.COMPLETE]
    if persona is None or not any(t.speaker == assistant for t in usable):
        return []
    motion = loaded.record.summary.motion
    others = {t.speaker for t in usable if t.speaker != assistant}
    messages: list[dict[str, str]] = [{"role": "system", "content": persona_prompt(persona, motion)}]
    for turn in usable:
        text = turn.content.strip()
        if turn.speaker == assistant:
            role = "assistant"
        else:
            role = "user"
            text = text if len(others) == 1 else f"{turn.speaker}: {text}"
        if messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n\n" + text}
        else:
            messages.append({"role": role, "content": text})
    if messages[1]["role"] == "assistant":  # the assistant opened: give it something to answer
        messages.insert(1, {"role": "user", "content": f"The motion before the town hall: {motion}"})
    while messages[-1]["role"] == "user":
        messages.pop()
    return messages


def render(store: Store, session_id: str, fmt: str, shape: str) -> str:
    """The text to append for one finished conversation ("" when there is nothing to write).

    `shape` as `shape_for` names it: `conversation:NAME`, `per-speaker` or `transcript`.
    """
    kind, _, assistant = shape.partition(":")
    if kind != "conversation" or fmt not in ("jsonl", "sharegpt"):
        return FORMATS[fmt](store, session_id)
    messages = chat(load(store, session_id), assistant)
    if not messages:
        return ""
    if fmt == "jsonl":
        return json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
    turns = [{"from": _SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in messages]
    return json.dumps({"conversations": turns}, ensure_ascii=False) + "\n"


def shape_for(fmt: str, *, per_speaker: bool, assistant: str) -> str:
    """What one conversation becomes in `fmt` (the ledger records it): txt is always the transcript."""
    if fmt == "txt":
        return "transcript"
    return "per-speaker" if per_speaker else f"conversation:{assistant}"
