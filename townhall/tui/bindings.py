"""Every TUI action in one table: its key, its binding id, its footer label, its palette help.

One table feeds the bindings (debate actions on the debate screen, the rest on the app),
the command palette and `townhall tui --help`, so an action cannot exist in one place and
be missing from another. Users remap by id in
`config.toml` (`[keymap]`), which the app applies with `App.set_keymap`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str
    keys: str
    action: str
    label: str
    help: str
    show: bool = True
    priority: bool = False
    scope: Literal["debate", "app"] = "debate"  # debate keys act on the debate screen only

    def binding(self) -> Binding:
        return Binding(self.keys, self.action, self.label, show=self.show, id=self.id, priority=self.priority)


ACTIONS: tuple[Action, ...] = (
    Action("townhall.pause", "p", "toggle_pause", "Pause", "Pause or resume the debate"),
    Action("townhall.step", "s", "step", "Step", "Take one turn, then pause"),
    Action("townhall.interrupt", "x", "interrupt", "Interrupt", "Stop the turn being generated, keeping its text"),
    Action("townhall.skip", "k", "skip", "Skip", "Skip the current speaker"),
    Action("townhall.interject", "i", "interject", "Interject", "Write to the town hall as the audience"),
    Action("townhall.tally", "t", "show_tally", "Tally",
           "Show where each participant stands now and how a vote would go"),
    Action("townhall.vote", "v", "call_vote", "Vote",
           "Call the vote: after this turn, the closing ballot and the minutes"),
    # The reading pace: how long a finished turn stays on show before the next speaker starts.
    Action("townhall.pace_slower", "minus", "pace(-1)", "Read slower",
           "Reading pace: slower (hold each turn longer)", show=False),
    Action("townhall.pace_faster", "plus,equals_sign", "pace(1)", "Read faster",
           "Reading pace: faster (up to flat out)", show=False),
    Action("townhall.flat_out", "0", "pace(0)", "Flat out",
           "Reading pace: flat out (no pause between turns), or back to the pace before", show=False),
    Action("townhall.minutes", "m", "show_minutes", "Minutes", "Read the minutes (written after the closing ballot)",
           show=False),
    # Branches: a selected turn (none selected: the last) is regenerated, edited, forked or flipped.
    # Arrows are priority keys so the focused transcript does not scroll with them; they pass
    # through to the interjection box while it has focus (DebateScreen.check_action).
    Action("townhall.select_prev", "up,left_square_bracket", "select_prev", "Previous turn",
           "Select the turn before (the selected turn is what r, e, f, ← and → act on)", show=False, priority=True),
    Action("townhall.select_next", "down,right_square_bracket", "select_next", "Next turn",
           "Select the turn after; past the last, follow the debate again", show=False, priority=True),
    Action("townhall.prev_alternative", "left", "prev_alternative", "Previous alternative",
           "Show the selected turn's previous alternative (‹ 1/2 ›); the debate goes on from it", show=False,
           priority=True),
    Action("townhall.next_alternative", "right", "next_alternative", "Next alternative",
           "Show the selected turn's next alternative; the debate goes on from it", show=False, priority=True),
    Action("townhall.regenerate", "r", "regenerate", "Regen",
           "Regenerate the selected turn (default: the last), keeping the old one as an alternative"),
    Action("townhall.edit", "e", "edit_turn", "Edit",
           "Edit the selected turn's text; the debate goes on from your version", show=False),
    Action("townhall.fork", "f", "fork", "Fork", "Start a new branch after the selected turn", show=False),
    Action("townhall.clear_selection", "escape", "clear_selection", "Follow",
           "Drop the turn selection and follow the debate again", show=False),
    Action("townhall.new", "ctrl+n", "new_townhall", "New",
           "Start a new town hall (motion, participants, policy, turns, model)", scope="app"),
    Action("townhall.sessions", "ctrl+o", "sessions", "Sessions",
           "Browse past sessions: open, replay, resume, export, delete", scope="app"),
    Action("townhall.export", "ctrl+e", "export", "Export", "Export the current session as Markdown"),
    Action("townhall.stats", "ctrl+b", "toggle_stats", "Stats",
           "Stats pane: right, bottom or hidden (hidden by default below 100 columns)"),
    Action("townhall.screenshot", "ctrl+s", "screenshot_svg", "Screenshot",
           "Save an SVG picture of the screen, named after the session and turn (in a browser: opens it)",
           show=False, scope="app"),
    Action("townhall.theme", "ctrl+t", "change_theme", "Theme", "Switch the colour theme (remembered)", show=False,
           scope="app"),
    Action("townhall.quit", "q,ctrl+q", "quit", "Quit", "Stop the debate, keep the record, quit", scope="app"),
)

# ctrl+q must quit even while typing in the interjection box.
QUIT_ALWAYS = Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="townhall.quit_always")


DEBATE_ACTIONS: tuple[Action, ...] = tuple(a for a in ACTIONS if a.scope == "debate")
APP_ACTIONS: tuple[Action, ...] = tuple(a for a in ACTIONS if a.scope == "app")


def app_bindings() -> list[Binding]:
    return [action.binding() for action in APP_ACTIONS] + [QUIT_ALWAYS]
