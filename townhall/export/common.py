"""Shared by the formats: loading one branch of a session once, cleaning untrusted text, and
the per-agent conversations that the training-data formats (jsonl, sharegpt, dpo) write.

Every format writes exactly one branch's path (the current branch unless one is named) with
that branch's stances and outcome; a turn the watcher wrote or edited is marked as theirs."""

from __future__ import annotations

from dataclasses import dataclass, field

from townhall.domain.events import StanceMeasured
from townhall.domain.personas import Persona
from townhall.store import OutcomeRecord, SessionRecord, Store
from townhall.domain.turns import WATCHER, Turn, TurnStatus

@dataclass(frozen=True)
class Loaded:
    record: SessionRecord
    turns: list[Turn]
    outcome: OutcomeRecord | None = None
    stances: list[StanceMeasured] = field(default_factory=list)
    branch: int = 1  # the branch whose path `turns` is

    @property
    def personas(self) -> dict[str, Persona]:
        return {p.name: p for p in self.record.personas}


def load(store: Store, session_id: str, branch: int | None = None) -> Loaded:
    """One branch of a session (the current one by default): its path, outcome and stances."""
    record = store.get_session(session_id)
    turns = store.turns(record.id, branch)
    number = record.summary.current_branch if branch is None else branch
    return Loaded(record, turns, store.outcome_of(record.id, number), store.stances_of(record.id, number), number)


EDITED = "edited by the watcher"


def by_watcher(turn: Turn) -> bool:
    return turn.author == WATCHER


def branch_line(loaded: Loaded) -> str | None:
    """'Branch 2 of 4' for a session with branches; None when it has one."""
    count = loaded.record.summary.branch_count
    return f"Branch {loaded.branch} of {count}" if count > 1 else None


def spoken(turns: list[Turn]) -> list[Turn]:
    """Turns that belong in a transcript: said out loud, even if cut off."""
    return [t for t in turns if t.content.strip() and t.status in (TurnStatus.COMPLETE, TurnStatus.INTERRUPTED)]


def persona_prompt(persona: Persona, motion: str) -> str:
    return (
        f"You are {persona.name}, {persona.title}. {persona.bio.strip()} "
        f"Speaking style: {persona.style.strip()} "
        f"You are taking part in a town hall debate on the motion: {motion}"
    )


def agent_conversations(loaded: Loaded) -> list[list[dict[str, str]]]:
    """One chat per participant who spoke, from that participant's point of view.

    Its own complete turns are `assistant`; everyone else's are `user`, prefixed with
    the speaker's name, consecutive ones merged so roles alternate. The motion opens
    as the first user message and each chat ends on the agent's turn (the shape seed
    003's chat-builder cleaned its conversations into).
    """
    motion = loaded.record.summary.motion
    usable = usable_turns(loaded.turns)
    chats = []
    for persona in loaded.record.personas:
        if not any(t.speaker == persona.name for t in usable):
            continue
        messages = point_of_view(persona, motion, usable)
        while messages[-1]["role"] == "user":
            messages.pop()
        chats.append(messages)
    return chats


def usable_turns(turns: list[Turn]) -> list[Turn]:
    """Turns fit for training data: complete and not empty."""
    return [t for t in turns if t.content.strip() and t.status == TurnStatus.COMPLETE]


def point_of_view(persona: Persona, motion: str, turns: list[Turn]) -> list[dict[str, str]]:
    """`turns` as `persona` saw them: its own are `assistant`, everyone else's `user` lines
    (`Name: text`, merged so roles alternate) after the persona's system prompt and the
    motion. A message holding text the watcher wrote carries `"author": "watcher"`."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": persona_prompt(persona, motion)},
        {"role": "user", "content": f"The motion before the town hall: {motion}"},
    ]
    for turn in turns:
        if turn.speaker == persona.name:
            messages.append({"role": "assistant", "content": turn.content.strip()})
        else:
            line = f"{turn.speaker}: {turn.content.strip()}"
            if messages[-1]["role"] == "user":
                messages[-1] = {**messages[-1], "content": messages[-1]["content"] + "\n\n" + line}
            else:
                messages.append({"role": "user", "content": line})
        if by_watcher(turn):
            messages[-1]["author"] = WATCHER
    return messages
