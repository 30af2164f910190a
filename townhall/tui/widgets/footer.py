"""The debate screen's footer: every key that fits, the least needed ones left out first.

At 80 columns Textual's footer cut its keys mid-word ("^e Expo") and never reached Quit.
Given the room (`room`, in columns, while the footer is compact), this one leaves out the
keys of `DROP_ORDER` one by one until the row fits; they still work and are all in the
command palette (^p).
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# First to go when the row is too long: each still works and is in the palette.
DROP_ORDER = ("toggle_stats", "new_townhall", "export", "show_tally", "skip", "step")


def key_width(key: FooterKey) -> int:
    """Columns a compact key takes: "key label" and the space after it (the palette's bar too)."""
    return cell_len(key.key_display) + 1 + cell_len(key.description) + 1


class DebateFooter(Footer):
    room: reactive[int] = reactive(0, recompose=True)  # columns to fit in; 0: every key

    def compose(self) -> ComposeResult:
        widgets: list[Widget] = list(super().compose())
        if self.room:
            keys = [w for w in widgets if isinstance(w, FooterKey)]
            need = sum(key_width(k) for k in keys)
            dropped: set[int] = set()
            for action in DROP_ORDER:
                if need <= self.room:
                    break
                for key in keys:
                    if key.action == action:
                        need -= key_width(key)
                        dropped.add(id(key))
            widgets = [w for w in widgets if id(w) not in dropped]
        yield from widgets
