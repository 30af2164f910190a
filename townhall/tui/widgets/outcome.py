"""The outcome banner: the closing ballot's result above the debate, in words and numbers.

Hidden until the watcher calls the vote or the ballot is counted. The moderator's
announcement also arrives as a transcript turn; the banner keeps the result in view
and says where the minutes are.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from townhall.domain.events import OutcomeDecided

RESULT_WORDS = {"carried": "THE MOTION CARRIES", "defeated": "THE MOTION IS DEFEATED", "tied": "THE VOTE IS TIED"}


class OutcomeBanner(Static):
    DEFAULT_CSS = """
    OutcomeBanner { display: none; height: auto; padding: 0 1; border: tall $accent; background: $boost; }
    OutcomeBanner.-shown { display: block; }
    OutcomeBanner.-carried { border: tall $success; background: $success 20%; }
    OutcomeBanner.-defeated { border: tall $error; background: $error 20%; }
    OutcomeBanner.-tied { border: tall $warning; background: $warning 20%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.outcome: OutcomeDecided | None = None
        self.minutes_ready = False

    def show(self, outcome: OutcomeDecided | None, minutes_ready: bool, called: bool) -> None:
        """Draw from the debate's state: its outcome (and whether the minutes are in), else a called vote."""
        self.reset()
        if outcome is not None:
            self.show_outcome(outcome)
            if minutes_ready:
                self.show_minutes_ready()
        elif called:
            self.show_called()

    def reset(self) -> None:
        self.outcome = None
        self.minutes_ready = False
        self.set_classes("")
        self.update("")

    def show_called(self) -> None:
        """The watcher called the vote: say so until the ballot is counted."""
        if self.outcome is None:
            self.add_class("-shown")
            self.update(Text("Vote called: the closing ballot follows the turn in progress…", style="bold"))

    def show_outcome(self, outcome: OutcomeDecided) -> None:
        self.outcome = outcome
        self.set_classes(f"-shown -{outcome.result}")
        self._draw()

    def show_minutes_ready(self) -> None:
        self.minutes_ready = True
        self._draw()

    def _draw(self) -> None:
        o = self.outcome
        if o is None:
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(RESULT_WORDS[o.result], style="bold")
        text.append(f"  {o.votes_for} for · {o.votes_against} against", style="bold")
        if o.announcement:
            text.append("  — ")
            text.append(o.announcement, style="italic")
        hint = Text(no_wrap=True, overflow="ellipsis")
        hint.append("t ", style="bold")
        hint.append("the ballot   ")
        if self.minutes_ready:
            hint.append("m ", style="bold")
            hint.append("read the minutes")
        else:
            hint.append("the minutes are being written…", style="italic")
        self.update(Text("\n").join([text, hint]))
