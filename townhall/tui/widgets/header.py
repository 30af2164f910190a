"""The header line: motion, model, the backend as the engine reports it, progress, the reading pace
and state."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget

from townhall.engine.base import EngineInfo

# How the stance bars were read, where the watcher should know; the in-process probe
# ("logits") is the normal case and says nothing.
PROBE_NOTES = {
    "logprobs": "stance from server probabilities",
    "choice": "no probabilities from server: stance by one-token choice",
}


class TownhallHeader(Widget):
    """Shows `EngineInfo.device` verbatim: the header never claims a GPU the engine did not."""

    DEFAULT_CSS = """
    TownhallHeader { height: 2; background: $panel; color: $foreground; padding: 0 1; }
    """

    motion: reactive[str] = reactive("")
    model_name: reactive[str] = reactive("")
    device: reactive[str] = reactive("")
    stance_probe: reactive[str | None] = reactive(None)
    turn: reactive[int] = reactive(0)
    max_turns: reactive[int | None] = reactive(None)
    state: reactive[str] = reactive("loading")
    spinner: reactive[int] = reactive(0)
    branch: reactive[str] = reactive("")  # "branch 2 of 3" once a session has more than one
    pace: reactive[str] = reactive("")  # the reading pace: "240 wpm", "240 wpm · reading 4s", "flat out"
    note: reactive[str] = reactive("")  # said instead of the state ("watching", "the debate ended: …")

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self._spinning: Timer | None = None

    def watch_state(self, state: str) -> None:
        """The spinner turns while the model loads, and only then."""
        if state == "loading" and self._spinning is None:
            self._spinning = self.set_interval(0.1, self._spin)
        elif state != "loading" and self._spinning is not None:
            self._spinning.stop()
            self._spinning = None

    def _spin(self) -> None:
        self.spinner += 1

    def show_engine(self, info: EngineInfo) -> None:
        self.model_name, self.device, self.stance_probe = info.model_name, info.device, info.stance_probe

    def render(self) -> Text:
        state = self.state
        if state == "loading":
            state = "loading model " + "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"[self.spinner % 10]
        elif state == "pausing":
            state = "pausing after this turn"
        colour = {
            "debating": "green", "paused": "yellow", "pausing": "yellow", "finished": "cyan", "error": "red",
        }.get(self.state, "magenta")
        top = Text(no_wrap=True, overflow="ellipsis")
        top.append("Motion: ", style="bold")
        top.append(self.motion or "—")
        engine = Text(no_wrap=True, overflow="ellipsis")
        engine.append(self.model_name or "model", style="bold")
        engine.append(" · ")
        engine.append(self.device or "starting")
        note = PROBE_NOTES.get(self.stance_probe or "")
        if note:
            engine.append(" · ")
            engine.append(note, style="italic")
        progress = Text(no_wrap=True)
        if self.branch:
            progress.append(f"   {self.branch}", style="bold")
        total = str(self.max_turns) if self.max_turns else "∞"
        progress.append(f"   turn {self.turn} of {total}   ")
        progress.append(f" {self.note or state} ", style=f"bold reverse {colour}")
        # One line each, cut rather than wrapped: a long motion or backend must not push the state off.
        # The reading pace at the right of the motion's line: the engine's line is full already.
        pace = Text(f"   {self.pace}" if self.pace else "", no_wrap=True, style="italic")
        width = self.content_size.width
        if width > 0:
            top.truncate(max(1, width - pace.cell_len), overflow="ellipsis", pad=bool(self.pace))
            engine.truncate(max(1, width - progress.cell_len), overflow="ellipsis")
        return Text("\n").join([top + pace, engine + progress])
