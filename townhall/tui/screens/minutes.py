"""The minutes dialog: the model's minutes of a session, scrollable, selectable and copyable.

The minutes are model output, so they sit in a read-only TextArea, which shows text as
it is and never interprets markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea


class MinutesScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    MinutesScreen { align: center middle; }
    MinutesScreen > Vertical {
        width: 90%; max-width: 100; height: 85%; border: thick $accent; background: $surface; padding: 1 2;
    }
    MinutesScreen #minutes-title { text-style: bold; height: auto; margin-bottom: 1; }
    MinutesScreen TextArea { height: 1fr; }
    MinutesScreen Horizontal { height: auto; align: right middle; margin-top: 1; }
    MinutesScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape,m", "close", "Close", id="townhall.minutes_close"),
        Binding("c", "copy", "Copy", id="townhall.minutes_copy"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.minutes_title = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.minutes_title, no_wrap=True, overflow="ellipsis"), id="minutes-title")
            area = TextArea(self.text, read_only=True, soft_wrap=True, id="minutes-text")
            area.cursor_blink = False
            yield area
            with Horizontal():
                yield Button("Copy", id="minutes-copy")
                yield Button("Close", id="minutes-close", variant="primary")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()  # arrows and page keys scroll the minutes

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "minutes-copy":
            self.action_copy()
        else:
            self.action_close()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("Minutes copied to the clipboard.", timeout=2)

    def action_close(self) -> None:
        self.dismiss(None)
