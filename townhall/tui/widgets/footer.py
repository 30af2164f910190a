"""The debate screen's footer: every key on a wide terminal, the essential ones on a narrow one.

At 80 columns Textual's footer cut its keys mid-word ("^e Expo") and never reached Quit.
Below 140 columns (where it turns compact) the keys marked `narrow=False` in the ACTIONS table stay out of
the footer; they still work and are all in the command palette (^p).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from townhall.tui.bindings import ACTIONS

WIDE_ONLY = frozenset(a.action for a in ACTIONS if not a.narrow)


class DebateFooter(Footer):
    narrow: reactive[bool] = reactive(False, recompose=True)

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if self.narrow and isinstance(widget, FooterKey) and widget.action in WIDE_ONLY:
                continue
            yield widget
