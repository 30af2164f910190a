"""The sessions browser: past town halls from the database, to open, replay, resume, export or delete.

Each row shows the session's result; `m` reads its minutes. Under the table, the highlighted
session's branches as a tree (regenerate, edit and fork make them): opening, replaying and
resuming act on the branch highlighted there (the current one until another is picked).
Opening and replaying are read-only: they draw stored turns into a transcript beside the
session's stance chart and result, and never touch the engine or the record. Resuming makes
the branch current in the record and hands the session id back to the app, which rebuilds
a scheduler from `session.plan_resume`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Label, Select, Static, Tree
from textual.widgets.tree import TreeNode

from townhall.domain.branches import Branch, TurnTree
from townhall.errors import TownhallError
from townhall.domain.events import StanceMeasured
from townhall.tui.colours import AUDIENCE_COLOUR, SUMMARY_COLOUR, speaker_colour
from townhall.tui.exports import export_to_file
from townhall.tui.screens.error import ErrorScreen
from townhall.tui.screens.minutes import MinutesScreen
from townhall.tui.widgets.stance import StanceChart, chart_rows
from townhall.tui.widgets.transcript import Transcript
from townhall.domain.turns import Turn, TurnKind

if TYPE_CHECKING:
    from townhall.store import OutcomeRecord, Store

SPEEDS: list[tuple[str, float]] = [
    ("instant", 0.0),
    ("10 words/s", 10.0),
    ("30 words/s", 30.0),
    ("100 words/s", 100.0),
]
EXPORT_FORMATS = ["md", "json", "jsonl", "sharegpt", "html", "txt"]


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def result_cell(outcome: OutcomeRecord | None) -> str:
    """'carried 3–2' for a session that voted; empty for one that did not."""
    if outcome is None or outcome.result is None:
        return ""
    return f"{outcome.result} {outcome.votes_for}–{outcome.votes_against}"


def outcome_text(outcome: OutcomeRecord | None) -> Text:
    """The result and the moderator's announcement, or why there is none."""
    if outcome is None or outcome.result is None:
        return Text("No vote was taken in this session.", style="italic")
    text = Text()
    text.append(f"Result: {outcome.result}, {outcome.tally}", style="bold")
    if outcome.announcement:
        text.append("\n" + outcome.announcement, style="italic")
    text.append("\nm: read the minutes" if outcome.minutes else "\nNo minutes were written.")
    return text


FIRST_WORDS = 6
MAX_TREE_ROWS = 6


def first_words(text: str, count: int = FIRST_WORDS) -> str:
    words = text.split()
    return " ".join(words[:count]) + (" …" if len(words) > count else "")


def branch_label(tree: TurnTree, branch: Branch) -> Text:
    """One branch, plainly: number, why it exists, where it starts, its length, its first words.

    Built as `Text`, never markup: the first words are model output.
    """
    path = tree.path(branch.number)
    start = tree.nodes[branch.fork].index + 1 if branch.fork is not None else 0
    own = path[start] if len(path) > start else None
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("● " if branch.number == tree.current else "  ", style="bold")
    text.append(f"branch {branch.number}", style="bold")
    if branch.number != 1 or branch.reason != "start":
        text.append(f" · {branch.reason} from #{start}")
    text.append(f" · {len(path)} turn{'s' if len(path) != 1 else ''}")
    if own is not None:
        text.append(f" · {own.speaker}: ", style="dim")
        text.append(first_words(own.content))
    return text


def fill_branch_tree(widget: Tree[int], tree: TurnTree) -> None:
    """Each branch under the branch it grew from; every node expanded, the current one highlighted."""
    widget.clear()
    placed: dict[int, TreeNode[int]] = {}
    for number in tree.numbers():
        branch = tree.branches[number]
        parent = placed.get(branch.parent) if branch.parent is not None else None
        under = parent if parent is not None else widget.root
        placed[number] = under.add(branch_label(tree, branch), data=number, expand=True, allow_expand=False)
    widget.root.expand_all()
    widget.styles.height = min(len(placed), MAX_TREE_ROWS) + 1  # and its top border; it scrolls beyond
    current = placed.get(tree.current)
    if current is not None:
        widget.call_after_refresh(widget.move_cursor, current, animate=False)  # lines exist once drawn


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 60; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
    ConfirmScreen Horizontal { height: auto; align: right middle; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape,n", "answer(False)", "No", id="townhall.confirm_no"),
        Binding("y", "answer(True)", "Yes", id="townhall.confirm_yes"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False)
            with Horizontal():
                yield Button("No", id="confirm-no")
                yield Button("Yes, delete", id="confirm-yes", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ReplayScreen(Screen[None]):
    """A stored session drawn turn by turn at a chosen speed; read-only."""

    BINDINGS = [
        Binding("escape,q", "close", "Back", id="townhall.replay_close"),
        Binding("space", "toggle", "Pause/resume", id="townhall.replay_pause"),
        Binding("m", "minutes", "Minutes", id="townhall.replay_minutes"),
    ]

    DEFAULT_CSS = """
    ReplayScreen #replay-title { height: auto; background: $panel; padding: 0 1; }
    ReplayScreen #replay-body { height: 1fr; }
    ReplayScreen #replay-side { width: 38; border-left: solid $panel; padding: 0 1; }
    ReplayScreen #replay-side Label { margin-top: 1; text-style: bold; }
    ReplayScreen.-narrow #replay-side { display: none; }
    """
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    def __init__(
        self,
        title: str,
        turns: list[Turn],
        colours: dict[str, str],
        words_per_s: float,
        *,
        stances: list[StanceMeasured] | None = None,
        participants: list[str] | None = None,
        outcome: OutcomeRecord | None = None,
    ) -> None:
        super().__init__()
        self.replay_title = title
        self.turns = turns
        self.colours = colours
        self.words_per_s = words_per_s
        self.stances = stances or []
        self.participants = participants if participants is not None else list(colours)
        self.outcome = outcome
        self.done = False
        self._playing = asyncio.Event()
        self._playing.set()

    def compose(self) -> ComposeResult:
        speed = "instant" if not self.words_per_s else f"{self.words_per_s:g} words/s"
        yield Static(Text(f"Replay ({speed}, read-only): {self.replay_title}"), id="replay-title")
        with Horizontal(id="replay-body"):
            yield Transcript(id="replay-transcript")
            with VerticalScroll(id="replay-side"):
                yield Label("Outcome")
                yield Static(outcome_text(self.outcome), id="replay-outcome")
                yield Label("Stance (▁ against … █ for)")
                chart = StanceChart(id="replay-stance")
                chart.rows = chart_rows([(name, self.colours.get(name, AUDIENCE_COLOUR)) for name in self.participants],
                                        self.stances)
                yield chart
        yield Footer()

    def on_mount(self) -> None:
        self.play()

    @work(exclusive=True, group="replay")
    async def play(self) -> None:
        transcript = self.query_one(Transcript)
        for turn in self.turns:
            colour = self.colours.get(turn.speaker) or (
                SUMMARY_COLOUR if turn.kind is TurnKind.SUMMARY else AUDIENCE_COLOUR
            )
            await transcript.start_turn(turn.index, turn.speaker, turn.kind, colour)
            if self.words_per_s > 0:
                for word in turn.content.split(" "):
                    await self._playing.wait()
                    await transcript.append(turn.index, word + " ")
                    await asyncio.sleep(1 / self.words_per_s)
            await transcript.finish_turn(turn, colour)
        self.done = True

    def action_toggle(self) -> None:  # type: ignore[override]  # not DOMNode's toggle(attribute)
        if self._playing.is_set():
            self._playing.clear()
        else:
            self._playing.set()

    def action_minutes(self) -> None:
        minutes = self.outcome.minutes if self.outcome is not None else None
        if not minutes:
            self.notify("This session has no minutes.", severity="warning")
            return
        self.app.push_screen(MinutesScreen(f"Minutes — {self.replay_title}", minutes))

    def action_close(self) -> None:
        self.app.pop_screen()


@dataclass(frozen=True)
class ResumeChoice:
    """A session to resume, and the branch to go on from (None: its current one)."""

    session_id: str
    branch: int | None = None


class SessionsScreen(Screen[ResumeChoice | None]):
    """Returns the session (and branch) to resume, or None."""

    BINDINGS = [
        Binding("enter,o", "open", "Open", id="townhall.sessions_open"),
        Binding("r", "replay", "Replay", id="townhall.sessions_replay"),
        Binding("u", "resume", "Resume", id="townhall.sessions_resume"),
        Binding("e", "export", "Export", id="townhall.sessions_export"),
        Binding("m", "minutes", "Minutes", id="townhall.sessions_minutes"),
        Binding("d,delete", "delete", "Delete", id="townhall.sessions_delete"),
        Binding("escape,q", "close", "Back", id="townhall.sessions_close"),
    ]

    DEFAULT_CSS = """
    SessionsScreen #sessions-title { height: 1; background: $panel; padding: 0 1; text-style: bold; }
    SessionsScreen DataTable { height: 1fr; }
    SessionsScreen #sessions-detail { height: auto; max-height: 12; border-top: solid $panel; padding: 0 1; }
    SessionsScreen #sessions-branches { height: 2; overflow-x: hidden; border-top: solid $panel; padding: 0 1; }
    SessionsScreen #sessions-branches:focus { border-top: solid $accent; }
    SessionsScreen #sessions-options { height: auto; padding: 0 1; }
    SessionsScreen #sessions-options Label { padding: 1 1 0 0; }
    SessionsScreen #sessions-options Select { width: 24; margin-right: 2; }
    """

    def __init__(self, store: Store, exports_dir: Path, current: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.exports_dir = exports_dir
        self.current = current
        self.last_export: Path | None = None

    def compose(self) -> ComposeResult:
        yield Static("Sessions", id="sessions-title")
        table: DataTable[Any] = DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
        yield table
        branches: Tree[int] = Tree("branches", id="sessions-branches")
        branches.show_root = False
        branches.guide_depth = 2
        yield branches
        with VerticalScroll(id="sessions-detail"):
            yield Static("", id="sessions-outcome", markup=False)
        with Horizontal(id="sessions-options"):
            yield Label("Replay speed")
            yield Select([(label, value) for label, value in SPEEDS], value=30.0, allow_blank=False,
                         id="sessions-speed")
            yield Label("Export as")
            yield Select([(f, f) for f in EXPORT_FORMATS], value="md", allow_blank=False, id="sessions-format")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("id", "motion / title", "status", "result", "turns", "started", "model")
        self.reload()
        table.focus()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        try:
            sessions = self.store.list_sessions()
            outcomes = {s.id: self.store.outcome_of(s.id) for s in sessions}
        except TownhallError as exc:
            self.app.push_screen(ErrorScreen("Cannot list sessions", str(exc)))
            return
        for s in sessions:
            label = s.label if len(s.label) <= 60 else s.label[:59] + "…"
            marker = " ●" if s.id == self.current else ""
            table.add_row(
                Text(s.id + marker),
                Text(label),
                Text(s.status),
                Text(result_cell(outcomes[s.id])),
                Text(str(s.turns), justify="right"),
                Text(_when(s.created_at)),
                Text(s.model_name or ""),
                key=s.id,
            )
        self.query_one("#sessions-title", Static).update(
            Text(f"Sessions — {len(sessions)} in {Path(self.store.path).name}")
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted session's result and the start of its minutes, under the table."""
        if event.row_key.value is None:
            return
        session_id = str(event.row_key.value)
        try:
            outcome = self.store.outcome_of(session_id)
            tree = self.store.tree(session_id)
        except TownhallError:
            return  # deleted meanwhile: the next reload drops the row
        fill_branch_tree(self.query_one("#sessions-branches", Tree), tree)
        text = outcome_text(outcome)
        if outcome is not None and outcome.minutes:
            text.append("\n\n")
            text.append(outcome.minutes)
        self.query_one("#sessions-outcome", Static).update(text)

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            self.notify("No sessions yet.", severity="warning")
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def selected_branch(self) -> int | None:
        """The branch highlighted in the tree; None: the session's current one."""
        node = self.query_one("#sessions-branches", Tree).cursor_node
        return node.data if node is not None else None

    def on_tree_node_selected(self, event: Tree.NodeSelected[int]) -> None:
        event.stop()
        self.action_open()

    def _replay(self, words_per_s: float) -> None:
        session_id = self.selected()
        if session_id is None:
            return
        branch = self.selected_branch()
        try:
            record = self.store.get_session(session_id)
            tree = self.store.tree(session_id)
            turns = self.store.turns(session_id, branch=branch)
            stances = self.store.stances_of(session_id, branch=branch)
            outcome = self.store.outcome_of(session_id, branch=branch)
        except TownhallError as exc:
            self.app.push_screen(ErrorScreen("Cannot open that session", str(exc)))
            return
        colours = {p.name: speaker_colour(p.color, i) for i, p in enumerate(record.personas)}
        measured = {reading.agent for reading in stances}
        participants = [p.name for p in record.personas if not p.moderator or p.name in measured]
        title = record.summary.label
        if len(tree.branches) > 1:
            title += f" · branch {branch or tree.current} of {len(tree.branches)}"
        self.app.push_screen(
            ReplayScreen(title, turns, colours, words_per_s, stances=stances, participants=participants,
                         outcome=outcome)
        )

    def action_open(self) -> None:
        self._replay(0.0)

    def action_replay(self) -> None:
        self._replay(float(self.query_one("#sessions-speed", Select).value))  # type: ignore[arg-type]

    def action_minutes(self) -> None:
        session_id = self.selected()
        if session_id is None:
            return
        try:
            outcome = self.store.outcome_of(session_id)
            label = self.store.get_session(session_id).summary.label
        except TownhallError as exc:
            self.app.push_screen(ErrorScreen("Cannot read that session", str(exc)))
            return
        if outcome is None or not outcome.minutes:
            self.notify("That session has no minutes.", severity="warning")
            return
        self.app.push_screen(MinutesScreen(f"Minutes — {label}", outcome.minutes))

    def action_resume(self) -> None:
        session_id = self.selected()
        if session_id is None:
            return
        self.dismiss(ResumeChoice(session_id, self.selected_branch()))

    def action_export(self) -> None:
        session_id = self.selected()
        if session_id is None:
            return
        fmt = str(self.query_one("#sessions-format", Select).value)
        try:
            self.last_export = export_to_file(self.store, session_id, fmt, self.exports_dir)
        except (TownhallError, OSError) as exc:
            self.app.push_screen(ErrorScreen("Export failed", str(exc)))
            return
        self.notify(f"Exported to {self.last_export}", title="Export", markup=False, timeout=6)

    def action_delete(self) -> None:
        session_id = self.selected()
        if session_id is None:
            return
        if session_id == self.current:
            self.notify("That session is running; start another before deleting it.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.store.delete(session_id)
            except TownhallError as exc:
                self.app.push_screen(ErrorScreen("Delete failed", str(exc)))
                return
            self.notify(f"Deleted session {session_id}.", markup=False)
            self.reload()

        self.app.push_screen(ConfirmScreen(f"Delete session {session_id} and all its turns?"), answered)

    def action_close(self) -> None:
        self.dismiss(None)
