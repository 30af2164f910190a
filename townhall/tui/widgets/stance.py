"""Stance bars and the stance-over-time chart, drawn from the stance probe's readings.

Meaning never rests on colour alone: a bar fills with `█` for the motion and `░` against,
and every bar and chart row ends in words ('62% for'). The colours come from the theme
(`$success` for, `$error` against) through component classes, so all themes read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from townhall.domain.events import StanceMeasured
from townhall.tui.tally import leaning, side_of

FOR_MARK, AGAINST_MARK = "█", "░"
LEVELS = "▁▂▃▄▅▆▇█"  # p_for 0 → ▁, 1 → █, fixed scale: a flat 0.5 must not look like a swing
LABEL_WIDTH = len("100% against")
NAME_WIDTH = 8
MIN_BAR = 6
STANCE_CSS_CLASSES = {"stance--for", "stance--against", "stance--none"}


class StanceColoured(Widget):
    """A widget that draws stances: the component classes `StanceStyles.of` reads, with the
    theme's colours, declared once for the chart, the roster and the tally."""

    COMPONENT_CLASSES = STANCE_CSS_CLASSES
    DEFAULT_CSS = """
    StanceColoured > .stance--for { color: $success; }
    StanceColoured > .stance--against { color: $error; }
    StanceColoured > .stance--none { color: $text-muted; }
    """


@dataclass(frozen=True)
class StanceStyles:
    """The theme's colours for each side, read from a widget's component classes."""

    for_: Style
    against: Style
    none: Style

    @classmethod
    def of(cls, widget: Widget) -> StanceStyles:
        return cls(
            widget.get_component_rich_style("stance--for"),
            widget.get_component_rich_style("stance--against"),
            widget.get_component_rich_style("stance--none"),
        )

    def side(self, p_for: float) -> Style:
        return self.for_ if side_of(p_for) == "for" else self.against


def stance_bar(p_for: float, width: int, styles: StanceStyles) -> Text:
    """`width` cells: the share for the motion filled from the left, the rest shaded."""
    filled = max(0, min(width, round(p_for * width)))
    text = Text()
    text.append(FOR_MARK * filled, style=styles.for_)
    text.append(AGAINST_MARK * (width - filled), style=styles.against)
    return text


def stance_line(p_for: float | None, width: int, styles: StanceStyles, *, probing: bool = True) -> Text:
    """A bar and its words in `width` cells; just the words where a bar would be too short.

    `probing` False: the engine has no stance probe (or the town hall holds no ballot), so
    no reading will come, and the line says so instead of promising one.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    if p_for is None:
        if probing:
            text.append("stance not measured yet" if width >= 23 else "no stance yet", style=styles.none)
        else:
            text.append("no stance probe" if width >= 15 else "no probe", style=styles.none)
        return text
    label = leaning(p_for)
    bar = width - len(label) - 1
    if bar >= MIN_BAR:
        text.append_text(stance_bar(p_for, bar, styles))
        text.append(" ")
    text.append(label, style=styles.side(p_for) + Style(bold=True))
    return text


def sparkline(values: Sequence[float], styles: StanceStyles) -> Text:
    """One mark per reading on a fixed 0..1 scale, coloured by the side it falls on."""
    text = Text()
    for p in values:
        level = LEVELS[min(len(LEVELS) - 1, max(0, int(p * len(LEVELS))))]
        text.append(level, style=styles.side(p))
    return text


@dataclass(frozen=True)
class ChartRow:
    name: str
    colour: str
    values: tuple[float, ...]


class StanceChart(StanceColoured):
    """One row per participant: name, the latest readings as a sparkline, the latest in words.

    Sized at render time: a wider pane (the stats pane at the bottom) shows more history.
    """

    DEFAULT_CSS = """
    StanceChart { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[ChartRow] = []

    def set_rows(self, rows: list[ChartRow]) -> None:
        self.rows = rows
        self.refresh(layout=True)

    def render(self) -> Text:
        styles = StanceStyles.of(self)
        width = self.content_size.width or 33
        room = max(4, width - NAME_WIDTH - 1 - 1 - LABEL_WIDTH)
        # The labels stand just after the longest series.
        marks = min(room, max((len(row.values) for row in self.rows), default=1))
        lines: list[Text] = []
        for row in self.rows:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"{row.name[:NAME_WIDTH]:<{NAME_WIDTH}} ", style=f"bold {row.colour}")
            if row.values:
                shown = row.values[-marks:]
                line.append_text(sparkline(shown, styles))
                line.append(" " * (marks - len(shown) + 1))
                line.append(leaning(row.values[-1]), style=styles.side(row.values[-1]))
            else:
                line.append("not measured yet", style=styles.none)
            lines.append(line)
        if not lines:
            return Text("no participants", style=styles.none)
        return Text("\n").join(lines)


def chart_rows(participants: Sequence[tuple[str, str]], readings: Iterable[StanceMeasured]) -> list[ChartRow]:
    """Chart rows for (name, colour) in speaking order from stored or live readings."""
    values: dict[str, list[float]] = {name: [] for name, _ in participants}
    for reading in readings:
        if reading.agent in values:
            values[reading.agent].append(reading.p_for)
    return [ChartRow(name, colour, tuple(values[name])) for name, colour in participants]
