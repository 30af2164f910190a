"""The dialog shown when the record could not be written during a debate (issue 21).

The run stopped before its next turn; the transcript stays on screen and the store keeps in
memory what it could not write. The dialog offers to write it once the cause is gone
(*Retry*: `Store.retry`) or to keep the session so far in a JSON export (*Save elsewhere*:
`Store.rescue`), at the path in its box. Its text can be copied like the error dialog's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from townhall.errors import TownhallError
from townhall.tui.exports import save_unsaved, unsaved_path
from townhall.tui.messages import ResumeAfterRetry

if TYPE_CHECKING:
    from townhall.store import Store


RETRIED = "retried"  # the record is whole again: the debate goes on
SAVED = "saved"  # the session so far is in a file


class RecordErrorScreen(ModalScreen[str | None]):
    """Dismissed with `RETRIED` or `SAVED` once the session is kept, None when closed."""

    DEFAULT_CSS = """
    RecordErrorScreen { align: center middle; }
    RecordErrorScreen > Vertical {
        width: 90; height: auto; max-height: 90%; border: thick $error; background: $surface; padding: 1 2;
    }
    RecordErrorScreen #record-error-title { text-style: bold; color: $error; margin-bottom: 1; }
    RecordErrorScreen TextArea { height: auto; max-height: 10; }
    RecordErrorScreen Label { margin-top: 1; }
    RecordErrorScreen Horizontal { height: auto; align: right middle; margin-top: 1; }
    RecordErrorScreen Button { margin-left: 1; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", id="townhall.record_error_close"),
    ]

    def __init__(self, store: Store, session_id: str, text: str, save_to: Path) -> None:
        super().__init__()
        self.store = store
        self.session_id = session_id
        self.error_text = self._explained(text)
        self.save_to = save_to

    @classmethod
    def for_session(cls, store: Store, session_id: str, text: str, exports_dir: Path) -> RecordErrorScreen:
        """The dialog for a debate screen, offering to save into the exports folder."""
        return cls(store, session_id, text, unsaved_path(store, session_id, exports_dir))

    def _explained(self, text: str) -> str:
        return (f"{text}\n\nThe debate is paused before its next turn; every turn shown is kept in memory. "
                "Free some space (or let the other program go) and press Retry, or save the session so far "
                "to the file below.")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("The record cannot be written", id="record-error-title", markup=False)
            area = TextArea(self.error_text, read_only=True, soft_wrap=True, id="record-error-text")
            area.cursor_blink = False
            yield area
            yield Label("Save elsewhere to:", markup=False)
            yield Input(str(self.save_to), id="record-error-path")
            with Horizontal():
                yield Button("Copy", id="record-error-copy")
                yield Button("Save elsewhere", id="record-error-save")
                yield Button("Retry", id="record-error-retry", variant="primary")
                yield Button("Close", id="record-error-close")

    def on_mount(self) -> None:
        self.query_one("#record-error-retry", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        match event.button.id:
            case "record-error-copy":
                self.app.copy_to_clipboard(self.error_text)
                self.notify("Error text copied to the clipboard.", timeout=2)
            case "record-error-save":
                self.action_save_elsewhere()
            case "record-error-retry":
                self.action_retry()
            case _:
                self.action_close()

    def _show(self, text: str) -> None:
        self.error_text = self._explained(text)
        self.query_one("#record-error-text", TextArea).text = self.error_text

    def action_retry(self) -> None:
        try:
            self.store.retry()
        except TownhallError as still:
            self._show(f"{still} (tried again)")
            self.notify(str(still), title="Still cannot write the record", severity="error", markup=False)
            return
        self.app.notify(f"Every turn is saved in {self.store.path}; the debate goes on.",
                        title="The record is whole", markup=False, timeout=8)
        self.app.post_message(ResumeAfterRetry(self.session_id))  # the app resumes it, as Sessions would
        self.dismiss(RETRIED)

    def action_save_elsewhere(self) -> None:
        typed = self.query_one("#record-error-path", Input).value.strip()
        if not typed:
            self.notify("Type the file to save the session to.", severity="warning")
            return
        try:
            path = save_unsaved(self.store, self.session_id, Path(typed))
        except (TownhallError, OSError) as failed:
            why = failed.strerror if isinstance(failed, OSError) and failed.strerror else str(failed)
            self.notify(f"{typed}: cannot write the session ({why})", title="Not saved", severity="error",
                        markup=False)
            return
        self.app.notify(f"The session so far is saved in {path} (`townhall import {path}` reads it back).",
                        title="Saved elsewhere", markup=False, timeout=10)
        self.dismiss(SAVED)

    def action_close(self) -> None:
        self.dismiss(None)
