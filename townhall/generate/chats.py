"""One conversation, one line: the generate output's default shape.

The exports write one chat per participant (each one's point of view), so a run of
two speakers wrote every conversation twice, once with each as the assistant; as
training data that teaches both sides at once. Here one speaker is the assistant
(`assistant` in the config, e.g. the teacher) and everyone else is the user: with one
other speaker their words stand alone, with several each line keeps its `Name:` so
the chat still says who spoke. `--per-speaker` keeps the exports' shape.
"""

from __future__ import annotations


from townhall.domain.text import json_line
from townhall.export import FORMATS
from townhall.domain.personas import Persona
from townhall.export.common import Loaded, load
from townhall.store import Store
from townhall.domain.turns import TurnStatus

_SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def conversation_prompt(persona: Persona, motion: str) -> str:
    """A training conversation's system message when the config gives none: who the assistant
    is, then the config's motion, which says what the conversation is (it is no town-hall debate)."""
    return (f"You are {persona.name}, {persona.title}. {persona.bio.strip()} Speaking style: {persona.style.strip()} "
            f"{' '.join(motion.split())}")


def chat(loaded: Loaded, assistant: str, system: str | None = None) -> list[dict[str, str]]:
    """The conversation as `assistant` sees it, ending on its last turn; [] if it never spoke.
    `system`: the system message (None: `conversation_prompt`)."""
    persona = loaded.personas.get(assistant)
    usable = [t for t in loaded.turns if t.content.strip() and t.status == TurnStatus.COMPLETE]
    if persona is None or not any(t.speaker == assistant for t in usable):
        return []
    motion = loaded.record.summary.motion
    others = {t.speaker for t in usable if t.speaker != assistant}
    system_text = system if system is not None else conversation_prompt(persona, motion)
    messages: list[dict[str, str]] = [{"role": "system", "content": system_text}]
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
        messages.insert(1, {"role": "user", "content": " ".join(motion.split())})
    while messages[-1]["role"] == "user":
        messages.pop()
    return messages


def render(store: Store, session_id: str, fmt: str, shape: str, system: str | None = None) -> str:
    """The text to append for one finished conversation ("" when there is nothing to write).

    `shape` as `shape_for` names it: `conversation:NAME`, `per-speaker` or `transcript`;
    `system` is the config's system message for this topic (None: made from the persona).
    """
    kind, _, assistant = shape.partition(":")
    if kind != "conversation" or fmt not in ("jsonl", "sharegpt"):
        return FORMATS[fmt](store, session_id)
    messages = chat(load(store, session_id), assistant, system)
    if not messages:
        return ""
    if fmt == "jsonl":
        return json_line({"messages": messages})
    turns = [{"from": _SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in messages]
    return json_line({"conversations": turns})


def shape_for(fmt: str, *, per_speaker: bool, assistant: str) -> str:
    """What one conversation becomes in `fmt` (the ledger records it): txt is always the transcript."""
    if fmt == "txt":
        return "transcript"
    return "per-speaker" if per_speaker else f"conversation:{assistant}"
