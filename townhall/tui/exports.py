"""Writing one session to a file from the TUI (the debate screen's export key and the sessions browser).

The export package renders text; where it goes (a folder the app chose, a file named for
the session, its suffix by format) is the front end's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from townhall.export import export_session, json_format
from townhall.paths import write_atomic

if TYPE_CHECKING:
    from townhall.store import Store

SUFFIXES = {"md": "md", "json": "json", "jsonl": "jsonl", "sharegpt": "json", "html": "html", "txt": "txt"}


def export_to_file(store: Store, session_id: str, fmt: str, folder: Path) -> Path:
    """Write one session through the store's exporter; the file name is the session id."""
    text = export_session(store, session_id, fmt)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"townhall-{session_id}" + (".sharegpt" if fmt == "sharegpt" else "")
    path = folder / f"{stem}.{SUFFIXES[fmt]}"
    write_atomic(path, text)
    return path


def unsaved_path(store: Store, session_id: str, folder: Path) -> Path:
    """Where "save elsewhere" offers to keep a session the record could not take."""
    return folder / f"{store.path.stem}-unsaved-{session_id}.json"


def save_unsaved(store: Store, session_id: str, path: Path) -> Path:
    """The session as shown, with what the record could not write (`Store.rescue`), as a JSON
    export at `path` (`townhall import` reads it back); written whole or not at all."""
    with store.rescue(session_id) as rescued:
        document = json_format.render(rescued, session_id)
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, document)
    return path
