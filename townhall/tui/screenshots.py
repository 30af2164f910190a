"""SVG pictures of the screen (Textual's own export), named after the session and turn.

In a terminal the picture is written to the exports folder, whole or not at all, under a
name that never replaces an earlier one; in a browser tab (`townhall web`) Textual hands it
to the browser instead, since the files of the process behind the page are out of reach.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App

from townhall.paths import write_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def screenshot_name(session_id: str | None, turn: int | None, taken_at: float) -> str:
    """`townhall-<session>-turn-007.svg`; without a session, the time it was taken."""
    if session_id:
        stem = f"townhall-{_UNSAFE.sub('_', session_id)}"
        return f"{stem}-turn-{turn:03d}.svg" if turn is not None else f"{stem}.svg"
    return f"townhall-{time.strftime('%Y%m%d-%H%M%S', time.localtime(taken_at))}.svg"


def unused_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `name-2`, `name-3`… when taken: a second picture of one turn keeps the first."""
    path = folder / name
    stem, suffix = path.stem, path.suffix
    number = 2
    while path.exists():
        path = folder / f"{stem}-{number}{suffix}"
        number += 1
    return path


def screen_position(screen: Any) -> tuple[str | None, int | None]:
    """The session and turn a screen shows, where it shows one (the debate and watch screens do)."""
    session_id = getattr(screen, "session_id", None)
    turn = getattr(screen, "turn", None)
    return (session_id if isinstance(session_id, str) else None, turn if isinstance(turn, int) else None)


def take_screenshot(app: App[Any], folder: Path, clock: Callable[[], float] = time.time) -> Path | None:
    """Save (or, in a browser, deliver) the screen as SVG and say where in a notification.

    Returns the file written in a terminal, None when it went to the browser or failed."""
    session_id, turn = screen_position(app.screen)
    name = screenshot_name(session_id, turn, clock())
    svg = app.export_screenshot(title=f"Townhall — {name}")
    if app.is_web:
        app.deliver_text(io.StringIO(svg), save_filename=name, open_method="browser", mime_type="image/svg+xml",
                         name="screenshot")  # Textual's own notification says when it arrived
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = unused_path(folder, name)
        write_atomic(path, svg)
    except OSError as exc:
        app.notify(f"Cannot save the screenshot in {folder}: {exc.strerror or exc}", title="Screenshot",
                   severity="error", markup=False)
        return None
    app.notify(f"Saved {path}", title="Screenshot", markup=False, timeout=6)
    return path

