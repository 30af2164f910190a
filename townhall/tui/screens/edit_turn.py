"""The edit dialog: the watcher rewrites one turn, and the debate goes on from that version.

The turn's text is model output, so it sits in a TextArea, which shows it as it is and never
interprets markup. The dialog only returns the new text (None: nothing to do); the debate
screen hands it to the scheduler, which keeps the original as an alternative.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea


class EditTurnScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    EditTurnScreen { align: center middle; }
    EditTurnScreen > Vertical {
        width: 90%; max-width: 100; height: 80%; border: thick $accent; background: $surface; padding: 1 2;
    }
    EditTurnScreen #edit-title { text-style: bold; height: auto; margin-bottom: 1; }
    EditTurnScreen TextArea { height: 1fr; }
    EditTurnScreen Horizontal { height: auto; align: right middle; margin-top: 1; }
    EditTurnScreen #edit-hint { width: 1fr; height: 3; content-align: left middle; }
    EditTurnScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="townhall.edit_save", priority=True),
        Binding("escape", "cancel", "Cancel", id="townhall.edit_cancel"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.edit_title = title
        self.original = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.edit_title, no_wrap=True, overflow="ellipsis"), id="edit-title")
            area = TextArea(self.original, soft_wrap=True, id="edit-text")
            area.cursor_blink = False
            yield area
            with Horizontal():
                yield Static(Text("ctrl+s saves · esc cancels", style="dim"), id="edit-hint")
                yield Button("Cancel", id="edit-cancel")
                yield Button("Save", id="edit-save", variant="primary")

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "edit-save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
