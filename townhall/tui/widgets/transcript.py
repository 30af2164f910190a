"""The transcript: one block per turn, streamed, rendered as Markdown, never as markup.

Model output is untrusted: it goes through a Markdown parser with HTML switched off
(so `<script>` shows as text instead of vanishing) and into Rich `Text` for labels,
never through Textual's content markup. The scroll view is anchored to the bottom, and
Textual releases the anchor while the user scrolls up, so reading is never yanked back.

Branches: a turn's label says where it stands among its alternatives ("‹ 2/3 ›", plain
characters, readable without colour) and whether the watcher wrote it ("✎ edited"). One
turn can be selected (the keys r, e, f, ← and → act on it); none selected means the last.
When the path changes, only the turns from the first difference on are taken down and
drawn again, so the earlier ones never flicker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from markdown_it import MarkdownIt
from rich.text import Text
from textual import events
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widget import MountError
from textual.widgets import Markdown, Static

from townhall.domain.turns import Turn, TurnKind, TurnStatus
from townhall.tui.view_model import TurnMark


def safe_markdown_parser() -> MarkdownIt:
    """GitHub-like Markdown with raw HTML disabled, so tags stay visible as text."""
    return MarkdownIt("gfm-like", {"html": False})


NO_MARK = TurnMark()

# How a turn looks: its speaker's colour and emoji.
Look = Callable[[Turn], tuple[str, str]]


class TurnView(Vertical):
    DEFAULT_CSS = """
    TurnView { height: auto; margin: 0; padding: 0 1; }
    TurnView.-selected { background: $boost; border-left: outer $accent; }
    TurnView > .turn-label { height: 1; }
    TurnView > Markdown { margin: 0; padding: 0 0 0 2; }
    TurnView > Markdown > * { margin: 0; }
    TurnView.-audience { border-left: thick $warning; background: $boost; }
    TurnView.-summary { border-left: thick $secondary; color: $text-muted; }
    TurnView.-moderator { border-left: thick $accent; }
    """

    @dataclass
    class Clicked(Message):
        """The watcher clicked a turn: select it."""

        index: int

    def __init__(self, index: int, speaker: str, kind: TurnKind, colour: str, emoji: str = "", node: str = "") -> None:
        super().__init__(classes=f"-{kind.value}")
        self.index = index
        self.node = node
        self.mark = NO_MARK
        self.speaker = speaker
        self.kind = kind
        self.colour = colour
        self.emoji = emoji
        self.status = TurnStatus.STREAMING
        self.text = ""
        self.error: str | None = None
        self._label = Static(self._label_text(), classes="turn-label", markup=False)
        self._body = Markdown("", parser_factory=safe_markdown_parser)

    async def build(self) -> None:
        """Mount label and body and wait for them, so text can go in straight away.

        (Composed children may still be mounting when a fast turn finishes.)
        """
        await self.mount_all([self._label, self._body])

    def _label_text(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.emoji:
            text.append(self.emoji + " ")
        text.append(self.speaker, style=f"bold {self.colour}")
        tag = {
            TurnKind.AUDIENCE: "  interjection",
            TurnKind.SUMMARY: "  summary",
            TurnKind.MODERATOR: "  moderator",
        }.get(self.kind)
        if tag:
            text.append(tag, style="italic dim")
        text.append(f"  #{self.index}", style="dim")
        if self.mark.count > 1:
            text.append(f"  ‹ {self.mark.position}/{self.mark.count} ›", style="bold")
        if self.mark.edited:
            text.append("  ✎ edited", style="italic")
        status = {
            TurnStatus.STREAMING: ("  ▍", "bold"),
            TurnStatus.INTERRUPTED: ("  [interrupted]", "yellow"),
            TurnStatus.FAILED: ("  [failed]", "bold red"),
            TurnStatus.DEGENERATE: ("  [degenerate]", "dim red"),
            TurnStatus.SKIPPED: ("  [skipped]", "dim"),
        }.get(self.status)
        if status:
            text.append(*status)
        if self.status is TurnStatus.INTERRUPTED and self.error:
            text.append(f" ({self.error})", style="yellow")
        return text

    def set_mark(self, mark: TurnMark) -> None:
        if mark != self.mark:
            self.mark = mark
            self._label.update(self._label_text())

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(self.Clicked(self.index))

    async def append(self, text: str) -> None:
        """Add streamed text, awaited to the end before the next piece or the turn's finish.

        Not Textual's MarkdownStream: stopping it cancels an append in flight, and the
        final fragment then raced that append and could be lost from the screen (a
        finished turn showed its first sentence only). The token batcher already limits
        re-parses to a dozen a second, which is what the stream's coalescing was for.
        """
        self.text += text
        try:
            await self._body.append(text)
        except MountError:
            if self._body.is_attached:
                raise
            # the app is quitting and took the transcript down while this batch was parsed

    async def finish(self, turn: Turn) -> None:
        """Show the turn as recorded: trimming may have removed streamed text."""
        self.status = turn.status
        self.error = turn.error
        body = turn.content
        if turn.status is TurnStatus.FAILED and turn.error:
            body = (body + "\n\n" if body else "") + f"Error: {turn.error}"
        # Re-rendering the same text would remove and re-mount every block: wasted work,
        # and the transcript shrinks for a frame, which can re-anchor a reader who just
        # scrolled away from the bottom.
        if body != self.text or not self._body.children:
            try:
                await self._body.update(body)
            except MountError:
                if self._body.is_attached:
                    raise
                return  # the app is quitting and took the transcript down while this turn ended
        self.text = turn.content
        self._label.update(self._label_text())


class Transcript(VerticalScroll):
    DEFAULT_CSS = """
    Transcript { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.views: dict[int, TurnView] = {}
        self.selected: int | None = None  # None: the last turn, and the view follows the debate
        self.marks: dict[str, TurnMark] = {}  # by node: a view drawn later picks its mark up

    def on_mount(self) -> None:
        self.anchor()

    # -- selection ----------------------------------------------------------------------
    def target(self) -> int | None:
        """The turn the branch keys act on: the selected one, else the last drawn."""
        if self.selected is not None and self.selected in self.views:
            return self.selected
        return max(self.views) if self.views else None

    def select(self, index: int | None) -> None:
        """Highlight turn `index` and bring it into view; None drops the highlight and follows the end."""
        if index is not None and index not in self.views:
            index = None
        for number, view in self.views.items():
            view.set_class(number == index, "-selected")
        self.selected = index
        if index is None:
            self.anchor()
            self.scroll_end(animate=False)
        else:
            self.scroll_to_widget(self.views[index], animate=False)

    def move_selection(self, step: int) -> None:
        """Up from nothing selects the last turn; down past the last follows the debate again."""
        if not self.views:
            return
        numbers = sorted(self.views)
        if self.selected is None or self.selected not in self.views:
            self.select(numbers[-1] if step < 0 else None)
            return
        at = numbers.index(self.selected) + step
        if at >= len(numbers):
            self.select(None)
        else:
            self.select(numbers[max(0, at)])

    # -- marks and redraws ------------------------------------------------------------------
    def alternatives_shown(self, index: int) -> int:
        """How many alternatives turn `index`'s label shows (0: no such turn on screen)."""
        view = self.views.get(index)
        return view.mark.count if view is not None else 0

    def set_marks(self, marks: Mapping[str, TurnMark]) -> None:
        self.marks = dict(marks)
        for view in self.views.values():
            view.set_mark(self.marks.get(view.node, NO_MARK))

    async def redraw_from(self, from_index: int, turns: Sequence[Turn], look: Look) -> None:
        """Show path `turns`: views before `from_index` stay, the rest are drawn again."""
        stale = [view for number, view in self.views.items() if number >= from_index]
        for view in stale:
            del self.views[view.index]
        if stale:
            await self.remove_children(stale)
        for turn in turns[from_index:]:
            await self.finish_turn(turn, *look(turn))
        # The selection stays: a regenerated turn comes back at the same place, highlighted.

    async def start_turn(self, index: int, speaker: str, kind: TurnKind, colour: str, emoji: str = "",
                         node: str = "") -> TurnView:
        view = self.views.get(index)
        if view is not None and node and view.node and view.node != node:
            # Another turn at this place (a regenerated one): its predecessor goes.
            del self.views[index]
            await view.remove()
            view = None
        if view is not None and node and not view.node:
            view.node = node
            view.set_mark(self.marks.get(node, NO_MARK))
        if view is None:
            view = TurnView(index, speaker, kind, colour, emoji, node)
            view.mark = self.marks.get(node, NO_MARK)
            view.set_class(index == self.selected, "-selected")
            self.views[index] = view
            try:
                await self.mount(view)
                await view.build()
            except MountError:
                if self.app.is_running:
                    raise
                # The app is shutting down with turns still queued: nothing to draw on.
        return view

    async def append(self, index: int, text: str) -> None:
        view = self.views.get(index)
        if view is not None and view.is_attached:
            await view.append(text)

    async def finish_turn(self, turn: Turn, colour: str, emoji: str = "") -> None:
        view = await self.start_turn(turn.index, turn.speaker, turn.kind, colour, emoji, turn.node)
        if view.is_attached:
            await view.finish(turn)

    async def clear(self) -> None:
        self.views.clear()
        self.selected = None
        self.marks = {}
        await self.remove_children()
        self.anchor()
