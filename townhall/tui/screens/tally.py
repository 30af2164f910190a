"""The tally dialog: where each participant stands now and how a vote would go, or the ballot's result.

Before the closing ballot it reads the latest stance probe of each participant
(`tally.tally`); after it, the votes the scheduler counted (`OutcomeDecided`). From here
the watcher can also call the vote.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from townhall.domain.events import OutcomeDecided
from townhall.tui.tally import Tally, leaning, tally
from townhall.tui.view_model import Member
from townhall.tui.widgets.stance import StanceColoured, StanceStyles, stance_bar

BAR_WIDTH = 16
RESULT_WORDS = {"carried": "CARRIED", "defeated": "DEFEATED", "tied": "TIED"}


def member_tally(members: list[Member]) -> Tally:
    return tally((m.name, m.p_for) for m in members if not m.moderator)


class TallyTable(StanceColoured):
    """The table itself; a widget of its own so the bars take the theme's colours."""

    DEFAULT_CSS = """
    TallyTable { height: auto; }
    """

    def __init__(self, members: list[Member], outcome: OutcomeDecided | None, *, probing: bool = True) -> None:
        super().__init__(id="tally-table")
        self.members = [m for m in members if not m.moderator]
        self.outcome = outcome
        self.probing = probing

    def render(self) -> Table:
        styles = StanceStyles.of(self)
        votes = {v.agent: v for v in self.outcome.votes} if self.outcome is not None else {}
        table = Table(box=None, padding=(0, 1), expand=False, show_edge=False)
        table.add_column("participant")
        table.add_column("for ↔ against", no_wrap=True)
        table.add_column("p(for)", justify="right")
        table.add_column("vote" if self.outcome is not None else "side now")
        for m in self.members:
            vote = votes.get(m.name)
            p = vote.p_for if vote is not None else m.p_for
            name = Text(m.name, style=f"bold {m.colour}")
            if p is None:
                missing = "not measured yet" if self.probing else "no stance probe"
                table.add_row(name, Text(missing, style=styles.none), Text("—"), Text("—"))
                continue
            side = vote.choice if vote is not None else leaning(p)
            table.add_row(name, stance_bar(p, BAR_WIDTH, styles), Text(f"{p:.2f}"), Text(side, style=styles.side(p)))
        return table


class TallyScreen(ModalScreen[bool]):
    """Dismissed with True when the watcher calls the vote from here."""

    DEFAULT_CSS = """
    TallyScreen { align: center middle; }
    TallyScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 1 2;
    }
    TallyScreen #tally-title { text-style: bold; margin-bottom: 1; }
    TallyScreen #tally-result { margin-top: 1; text-style: bold; }
    TallyScreen #tally-announcement { color: $text-muted; }
    TallyScreen Horizontal { height: auto; align: right middle; margin-top: 1; }
    TallyScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape,t", "close", "Close", id="townhall.tally_close"),
        Binding("v", "vote", "Call the vote", id="townhall.tally_vote"),
    ]

    def __init__(
        self, members: list[Member], outcome: OutcomeDecided | None = None, *, can_vote: bool = False,
        probing: bool = True,
    ) -> None:
        super().__init__()
        self.members = members
        self.outcome = outcome
        self.probing = probing
        self.can_vote = can_vote and outcome is None
        self.tally = member_tally(members)

    def compose(self) -> ComposeResult:
        with Vertical():
            title = ("The closing ballot" if self.outcome is not None
                     else "The tally now (from each participant's latest stance)")
            yield Static(Text(title), id="tally-title")
            yield TallyTable(self.members, self.outcome, probing=self.probing)
            yield Static(self.result_text(), id="tally-result")
            if self.outcome is not None and self.outcome.announcement:
                yield Static(Text(self.outcome.announcement), id="tally-announcement")
            with Horizontal():
                if self.can_vote:
                    yield Button("Call the vote (v)", id="tally-vote", variant="warning")
                yield Button("Close", id="tally-close", variant="primary")

    def result_text(self) -> Text:
        if self.outcome is not None:
            o = self.outcome
            return Text(f"Result: {RESULT_WORDS[o.result]}, {o.votes_for} for, {o.votes_against} against")
        if not self.probing and not self.tally.measured:
            return Text("No stance probe on this engine (or ballot = false): no tally and no vote.")
        return Text(self.tally.summary)

    def on_mount(self) -> None:
        self.query_one("#tally-close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "tally-vote")

    def action_close(self) -> None:
        self.dismiss(False)

    def action_vote(self) -> None:
        if self.can_vote:
            self.dismiss(True)
        else:
            self.notify("The vote cannot be called now.", severity="warning")
