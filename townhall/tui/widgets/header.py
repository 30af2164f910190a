"""The header line: motion, model, the backend as the engine reports it, progress and state."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class TownhallHeader(Widget):
    """Shows `EngineInfo.device` verbatim: the header never claims a GPU the engine did not."""

    DEFAULT_CSS = """
    TownhallHeader { height: 2; background: $panel; color: $foreground; padding: 0 1; }
    """

    motion: reactive[str] = reactive("")
    model_name: reactive[str] = reactive("")
    device: reactive[str] = reactive("")
    turn: reactive[int] = reactive(0)
    max_turns: reactive[int | None] = reactive(None)
    state: reactive[str] = reactive("loading")
    spinner: reactive[int] = reactive(0)

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
        bottom = Text(no_wrap=True, overflow="ellipsis")
        bottom.append(self.model_name or "model", style="bold")
        bottom.append(" · ")
        bottom.append(self.device or "starting")
        total = str(self.max_turns) if self.max_turns else "∞"
        bottom.append(f"   turn {self.turn} of {total}   ")
        bottom.append(f" {state} ", style=f"bold reverse {colour}")
        # One line each, cut rather than wrapped: a long motion must not push the state off.
        width = self.content_size.width
        if width > 0:
            for line in (top, bottom):
                line.truncate(width, overflow="ellipsis")
        return Text("\n").join([top, bottom])
