"""The roster: who is here, who speaks now and next, where each stands, and what each has cost."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll

from townhall.tui.view_model import Member
from townhall.tui.widgets.stance import StanceColoured, StanceStyles, stance_line

__all__ = ["Member", "Roster", "RosterEntry"]


class RosterEntry(StanceColoured):
    """Drawn at render time, so the stance bar fits whatever width the roster has.

    The stance line comes second: on a narrow terminal the entry is two lines high and
    shows the name and the stance in words.
    """

    DEFAULT_CSS = """
    RosterEntry { height: auto; padding: 0 1; margin-bottom: 1; }
    RosterEntry.-speaking { background: $boost; }
    """

    def __init__(self, member: Member) -> None:
        super().__init__()
        self.member = member
        self.role = ""

    def show(self, role: str) -> None:
        self.role = role
        self.set_class(role == "speaking", "-speaking")
        self.refresh()

    def render(self) -> Text:
        m = self.member
        width = self.content_size.width or 30
        lines: list[Text] = []
        first = Text()
        first.append({"speaking": "▶ ", "next": "… "}.get(self.role, "  "), style="bold")
        if m.emoji:
            first.append(m.emoji + " ")
        first.append(m.name, style=f"bold {m.colour}")
        lines.append(first)
        if m.moderator:
            lines.append(Text("  moderator · " + m.title, style="dim"))
        else:
            probing = self.parent.probing if isinstance(self.parent, Roster) else True
            lines.append(Text("  ").append_text(stance_line(m.p_for, width - 2, StanceStyles.of(self),
                                                            probing=probing)))
            lines.append(Text("  " + m.title + (f" · {m.side}" if m.side else ""), style="italic"))
        if self.role:
            lines.append(Text(f"  {'speaking now' if self.role == 'speaking' else 'next'}", style=m.colour))
        turns = "1 turn" if m.turns == 1 else f"{m.turns} turns"
        words = "1 word" if m.words == 1 else f"{m.words} words"
        lines.append(Text(f"  {turns} · {words}", style="dim"))
        if m.kv_tokens is not None:
            lines.append(Text(f"  KV state {m.kv_tokens} tokens", style="dim"))
        for line in lines:  # one fact per line, cut rather than wrapped
            line.no_wrap = True
            line.overflow = "ellipsis"
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)


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
        self.probing = True  # whether stance readings will come (the engine has a probe, the town hall a ballot)

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
