"""What a command does when the record failed during a run: keep the session in an export file.

The store holds what it could not write (`Store.rescue`); here it becomes a JSON export, which
`townhall import` reads back, written beside the database or, where that fails too (the same
full disk), in the temporary directory. The one line the user sees names the file, the cause,
how many turns shown are not in the database, and where the session is kept.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from townhall.errors import TownhallError
from townhall.export import json_format
from townhall.paths import write_atomic
from townhall.store import Store


def _turns(count: int) -> str:
    if count == 0:
        return "the end of the session is not saved"
    return "1 turn is not saved" if count == 1 else f"{count} turns are not saved"


def keep_unsaved(store: Store, session_id: str, error: TownhallError) -> tuple[str, Path | None]:
    """Write the whole session to an export file; return the one line to show and the file (None if
    no file could be written anywhere)."""
    with store.rescue(session_id) as rescued:
        document = json_format.render(rescued, session_id)
    name = f"{store.path.stem}-unsaved-{session_id}.json"
    for folder in (store.path.parent, Path(tempfile.gettempdir())):
        target = folder / name
        try:
            write_atomic(target, document)
        except OSError:
            continue
        line = (f"{error}; {_turns(store.unsaved_turns(session_id))} in the database; the whole session is kept "
                f"in {target} (`townhall import {target}` once the cause is gone)")
        return line, target
    return f"{error}; {_turns(store.unsaved_turns(session_id))}, and no export file could be written either", None
