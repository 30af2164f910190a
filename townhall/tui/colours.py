"""Speaker colours: the persona's own if it parses, else a stable pick from a palette."""

from __future__ import annotations

from rich.color import Color, ColorParseError

PALETTE = ("#5fafff", "#ff875f", "#87d75f", "#d787ff", "#ffd75f", "#5fd7d7", "#ff5faf", "#afaf87")
AUDIENCE_COLOUR = "#d7af00"
SUMMARY_COLOUR = "#8a8a8a"


def speaker_colour(colour: str | None, position: int) -> str:
    if colour:
        try:
            Color.parse(colour)
            return colour
        except ColorParseError:
            pass
    return PALETTE[position % len(PALETTE)]
