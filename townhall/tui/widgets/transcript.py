"""The transcript: one block per turn, streamed, rendered as Markdown, never as markup.

Model output is untrusted: it goes through a Markdown parser with HTML switched off
(so `<script>` shows as text instead of vanishing) and into Rich `Text` for labels,
never through Textual's content markup. The scroll view is anchored to the bottom, and
Textual releases the anchor while the user scrolls up, so reading is never yanked back.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.widget import MountError
from textual.widgets import Markdown, Static

from townhall.turns import Turn, TurnKind, TurnStatus


def safe_markdown_parser() -> MarkdownIt:
    """GitHub-like Markdown with raw HTML disabled, so tags stay visible as text."""
    return MarkdownIt("gfm-like", {"html": False})


class TurnView(Vertical):
    DEFAULT_CSS = """
    TurnView { height: auto; margin: 0; padding: 0 1; }
    TurnView > .turn-label { height: 1; }
    TurnView > Markdown { margin: 0; padding: 0 0 0 2; }
    TurnView > Markdown > * { margin: 0; }
    TurnView.-audience { border-left: thick $warning; background: $boost; }
    TurnView.-summary { border-left: thick $secondary; color: $text-muted; }
    TurnView.-moderator { border-left: thick $accent; }
    """

    def __init__(self, index: int, speaker: str, kind: TurnKind, colour: str, emoji: str = "") -> None:
        super().__init__(classes=f"-{kind.value}")
        self.index = index
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

    def on_mount(self) -> None:
        self.anchor()

    async def start_turn(self, index: int, speaker: str, kind: TurnKind, colour: str, emoji: str = "") -> TurnView:
        view = self.views.get(index)
        if view is None:
            view = TurnView(index, speaker, kind, colour, emoji)
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
        view = await self.start_turn(turn.index, turn.speaker, turn.kind, colour, emoji)
        if view.is_attached:
            await view.finish(turn)

    async def clear(self) -> None:
        self.views.clear()
        await self.remove_children()
        self.anchor()
