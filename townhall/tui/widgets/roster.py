"""The roster: who is here, who speaks now and next, and what each has cost so far."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


@dataclass
class Member:
    """What the roster shows for one participant; updated from events, never from widgets."""

    name: str
    title: str
    colour: str
    emoji: str = ""
    moderator: bool = False
    turns: int = 0
    words: int = 0
    kv_tokens: int = 0
    talk_s: float = 0.0


class RosterEntry(Static):
    DEFAULT_CSS = """
    RosterEntry { padding: 0 1; margin-bottom: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    RosterEntry.-speaking { background: $boost; }
    """

    def __init__(self, member: Member) -> None:
        super().__init__(id=None, markup=False)
        self.member = member
        self.role = ""

    def show(self, role: str) -> None:
        self.role = role
        self.set_class(role == "speaking", "-speaking")
        self.update(self._text())

    def _text(self) -> Text:
        m = self.member
        text = Text(no_wrap=True, overflow="ellipsis")  # one fact per line, cut rather than wrapped
        marker = {"speaking": "▶ ", "next": "… "}.get(self.role, "  ")
        text.append(marker, style="bold")
        if m.emoji:
            text.append(m.emoji + " ")
        text.append(m.name, style=f"bold {m.colour}")
        text.append("\n  ")  # the first line is the whole entry on a narrow screen: marker and name only
        if m.moderator:
            text.append("moderator · ", style="dim")
        text.append(m.title, style="italic")
        if self.role:
            text.append(f"\n  {'speaking now' if self.role == 'speaking' else 'next'}", style=m.colour)
        turns = "1 turn" if m.turns == 1 else f"{m.turns} turns"
        words = "1 word" if m.words == 1 else f"{m.words} words"
        text.append(f"\n  {turns} · {words}", style="dim")
        text.append(f"\n  KV state {m.kv_tokens} tokens", style="dim")
        return text


class Roster(VerticalScroll):
    DEFAULT_CSS = """
    Roster { width: 34; border-right: solid $panel; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.members: dict[str, Member] = {}
        self._entries: dict[str, RosterEntry] = {}
        self.speaking: str | None = None
        self.next_up: str | None = None

    async def set_members(self, members: list[Member]) -> None:
        await self.remove_children()
        self.members = {m.name: m for m in members}
        self._entries = {m.name: RosterEntry(m) for m in members}
        await self.mount_all(self._entries.values())
        self.refresh_entries()

    def set_roles(self, speaking: str | None, next_up: str | None) -> None:
        self.speaking, self.next_up = speaking, next_up
        self.refresh_entries()

    def refresh_entries(self) -> None:
        for name, entry in self._entries.items():
            role = "speaking" if name == self.speaking else "next" if name == self.next_up else ""
            entry.show(role)
