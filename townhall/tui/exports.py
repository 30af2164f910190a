"""Writing one session to a file from the TUI (the debate screen's export key and the sessions browser).

The export package renders text; where it goes (a folder the app chose, a file named for
the session, its suffix by format) is the front end's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from townhall.export import export_session

if TYPE_CHECKING:
    from townhall.store import Store

SUFFIXES = {"md": "md", "json": "json", "jsonl": "jsonl", "sharegpt": "json", "html": "html", "txt": "txt"}


def export_to_file(store: Store, session_id: str, fmt: str, folder: Path) -> Path:
    """Write one session through the store's exporter; the file name is the session id."""
    text = export_session(store, session_id, fmt)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"townhall-{session_id}" + (".sharegpt" if fmt == "sharegpt" else "")
    path = folder / f"{stem}.{SUFFIXES[fmt]}"
    path.write_text(text, encoding="utf-8")
    return path
