"""The interjection box: a multi-line input where Enter sends and Ctrl+J starts a new line."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

PLACEHOLDER = "Interject as the audience — Enter sends · Ctrl+J new line · Esc leaves the box"


class InterjectBox(TextArea):
    """Seed 002 had single-line input only; debates need room for a paragraph."""

    DEFAULT_CSS = """
    InterjectBox { height: 4; border: tall $panel; }
    InterjectBox:focus { border: tall $accent; }
    """

    BINDINGS = [
        Binding("ctrl+j,shift+enter", "newline", "New line", id="townhall.interject_newline", show=False),
        Binding("escape", "leave", "Leave box", id="townhall.interject_leave"),
    ]

    @dataclass
    class Submitted(Message):
        box: InterjectBox
        text: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            placeholder=PLACEHOLDER,
            compact=False,
        )
        self.cursor_blink = False

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            text = self.text.strip()
            if text:
                self.post_message(self.Submitted(self, text))
                self.clear()
            return
        await super()._on_key(event)

    def action_newline(self) -> None:
        self.insert("\n")

    def action_leave(self) -> None:
        """Hand the keys back to the debate (p, s, x, q...) without losing the draft."""
        transcript = self.screen.query("#transcript")
        if transcript:
            transcript.first().focus()
        else:
            self.app.set_focus(None)
