"""Live numbers: speed, stance over time, per-turn latency, prefill saved, talk time."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label, Sparkline, Static

from townhall.tui.view_model import Member
from townhall.tui.widgets.stance import ChartRow, StanceChart

BAR_WIDTH = 12


def talk_bars(members: list[Member], width: int = BAR_WIDTH) -> Text:
    """One bar per participant, scaled to the longest talker so the leader fills the bar."""
    longest = max((m.talk_s for m in members), default=0.0)
    text = Text()
    for m in members:
        filled = round(width * m.talk_s / longest) if longest > 0 else 0
        text.append(f"{m.name[:9]:<9} ", style=f"bold {m.colour}")
        text.append("█" * filled, style=m.colour)
        text.append("░" * (width - filled), style="dim")
        text.append(f" {m.talk_s:5.1f}s\n")
    return text


class StatsPanel(VerticalScroll):
    DEFAULT_CSS = """
    StatsPanel { width: 36; border-left: solid $panel; padding: 0 1; }
    StatsPanel Label { margin-top: 1; text-style: bold; }
    StatsPanel Sparkline { height: 3; }
    StatsPanel Sparkline.empty { display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.latencies: list[float] = []
        self.saved: list[float] = []
        self.current_tps: float = 0.0
        self.last_tps: float = 0.0

    def compose(self) -> ComposeResult:
        yield Static(self._speed_text(), id="stats-speed", markup=False)
        yield Label("Stance (▁ against … █ for)")
        yield StanceChart(id="stats-stance")
        yield Label("Latency per turn (s)")
        # Hidden until the first turn: a sparkline of one value draws as a solid block.
        yield Sparkline([], id="stats-latency", classes="empty")
        yield Static("", id="stats-latency-last", markup=False)
        yield Label("Prefill tokens saved by KV states")
        yield Sparkline([], id="stats-saved", classes="empty")
        yield Static("", id="stats-saved-last", markup=False)
        yield Label("Talk time")
        yield Static("", id="stats-talk", markup=False)

    def _speed_text(self) -> Text:
        text = Text()
        text.append("Now ", style="bold")
        text.append(f"{self.current_tps:6.1f} tok/s")
        text.append("\nLast turn ", style="bold")
        text.append(f"{self.last_tps:6.1f} tok/s")
        return text

    def set_current_tps(self, tps: float) -> None:
        self.current_tps = tps
        self.query_one("#stats-speed", Static).update(self._speed_text())

    def add_turn(self, latency_ms: float, saved_tokens: int, decode_tps: float) -> None:
        self.latencies.append(latency_ms / 1000)
        self.saved.append(float(saved_tokens))
        self.last_tps = decode_tps
        self.current_tps = 0.0
        self.query_one("#stats-speed", Static).update(self._speed_text())
        for selector, values in (("#stats-latency", self.latencies), ("#stats-saved", self.saved)):
            sparkline = self.query_one(selector, Sparkline)
            sparkline.data = values[-60:]
            sparkline.set_class(len(values) < 2, "empty")
        self.query_one("#stats-latency-last", Static).update(
            f"last {self.latencies[-1]:.2f}s · mean {sum(self.latencies) / len(self.latencies):.2f}s"
        )
        self.query_one("#stats-saved-last", Static).update(
            f"last {saved_tokens} · total {int(sum(self.saved))} tokens"
        )

    def set_talk(self, members: list[Member]) -> None:
        self.query_one("#stats-talk", Static).update(talk_bars(members))

    def set_stances(self, members: list[Member]) -> None:
        """One chart row per participant; the moderator takes no side."""
        rows = [ChartRow(m.name, m.colour, tuple(m.stances)) for m in members if not m.moderator]
        self.query_one("#stats-stance", StanceChart).set_rows(rows)
