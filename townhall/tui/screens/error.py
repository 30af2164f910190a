"""A dialog for errors whose text can be selected and copied, after which the app goes on."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea


class ErrorScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen > Vertical {
        width: 80; height: auto; max-height: 80%; border: thick $error; background: $surface; padding: 1 2;
    }
    ErrorScreen #error-title { text-style: bold; color: $error; margin-bottom: 1; }
    ErrorScreen TextArea { height: auto; max-height: 12; }
    ErrorScreen Horizontal { height: auto; align: right middle; margin-top: 1; }
    ErrorScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape", "dismiss_error", "Close", id="townhall.error_close"),
        Binding("c", "copy_error", "Copy", id="townhall.error_copy"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.error_title = title
        self.error_text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.error_title, id="error-title", markup=False)
            area = TextArea(self.error_text, read_only=True, soft_wrap=True, id="error-text")
            area.cursor_blink = False
            yield area
            with Horizontal():
                yield Button("Copy", id="error-copy-button")
                yield Button("Close", id="error-close-button", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#error-close-button", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "error-copy-button":
            self.action_copy_error()
        else:
            self.action_dismiss_error()

    def action_copy_error(self) -> None:
        self.app.copy_to_clipboard(self.error_text)
        self.notify("Error text copied to the clipboard.", timeout=2)

    def action_dismiss_error(self) -> None:
        self.dismiss(None)
