"""`townhall watch`: follow, read-only, a debate another `townhall` process is recording."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from townhall.cli.options import DbOpt

SessionArg = Annotated[
    Optional[str],
    typer.Argument(help="Session id or a unique prefix (default: the newest debate still running)."),
]

HELP = """Watch a debate that another terminal is running, as it is recorded.

Opens the TUI read-only on a session another process is writing (`townhall run --db X`, or
`townhall`/`townhall tui`): the turns as they are said (the words of the turn in progress as
they are saved, every second), the stances, the vote and the minutes. Several watchers may
follow one debate at once, and watching never changes it: the keys that would steer it are
absent; t (tally), m (minutes), ctrl+b (stats), ctrl+e (export) and the arrows (select a turn)
work, q leaves. When the writer ends, or stops without ending, the watcher says so."""


def register(app: typer.Typer) -> None:
    """Add `townhall watch`."""

    @app.command("watch", help=HELP)
    def watch(session: SessionArg = None, db: DbOpt = None) -> None:
        follow(session, db)


def follow(session: str | None, db: Path | None) -> None:
    """Open the record read-only, find the session, run the watch app; one clear line if there is none."""
    from townhall.errors import NotFoundError
    from townhall.paths import default_db_path
    from townhall.store import Store
    from townhall.store.follow import Follower, newest_running
    from townhall.tui.config import load_config
    from townhall.tui.watch_app import WatchApp

    path = db if db is not None else default_db_path()
    store = Store.open_read_only(path)
    try:
        session_id = session if session is not None else newest_running(store)
        if session_id is None:
            raise NotFoundError(f"no debate is running in {path}; start one with `townhall run` or `townhall`, "
                                "or name a session: `townhall watch ID`")
        app = WatchApp(Follower(store, session_id), config=load_config())
        app.run()
    finally:
        store.close()
