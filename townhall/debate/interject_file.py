"""Interjections from a file: whatever a person saves in their own editor is said from the floor.

Polling, not an OS watch: no new dependency, and it sees every editor's way of saving. A
save is a change of the file's mtime, size or inode (an atomic save writes a new file and
renames it over the old one: a new inode). What is new in it is interjected as from the
audience: the text after what was already taken when the file grew with the old content
as its prefix, the whole text when it was rewritten; trimmed, and nothing when a save adds
nothing. What the file holds when the watch begins counts as taken. Written once for every
front end: `debate.session.Session` runs it beside the debate (`feeds`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from townhall.domain.turns import FILE
from townhall.errors import ConfigError, TownhallError

log = logging.getLogger(__name__)

POLL_S = 0.3
Interject = Callable[[str, str], None]  # (text, source): a scheduler's interject, bound to the audience


def new_text(taken: str, now: str) -> str:
    """What a save added: the part after `taken` when the file grew from it, else the whole (trimmed)."""
    fresh = now[len(taken):] if now.startswith(taken) else now
    return fresh.strip()


class InterjectionFile:
    """Watches one file and interjects what each save adds (see the module docstring)."""

    def __init__(self, path: Path, poll_s: float = POLL_S) -> None:
        self.path = path
        self.poll_s = poll_s
        self._taken = ""
        self._seen: tuple[int, int, int] | None = None

    def check(self) -> None:
        """The file must be a readable text file, or not exist yet (it is made on the first save)."""
        if self.path.exists() and not self.path.is_file():
            raise ConfigError(f"--interject-file {self.path}: not a file")
        self._taken = self._read() or ""
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None  # gone between the stat and the read (mid-rename): seen on the next poll

    def poll(self) -> str | None:
        """What the latest save added, once per save; None when nothing was saved or added."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return None
        text = self._read()
        if text is None:
            return None
        self._seen = stamp
        fresh = new_text(self._taken, text)
        self._taken = text
        return fresh or None

    async def run(self, interject: Interject) -> None:
        """Poll until cancelled; each addition goes to `interject(text, "file")`. A line the
        scheduler refuses is logged and dropped: a bad save never ends the debate."""
        if self._seen is None:
            self.check()
        while True:
            await asyncio.sleep(self.poll_s)
            fresh = self.poll()
            if fresh is None:
                continue
            try:
                interject(fresh, FILE)
            except TownhallError as refused:
                log.warning("%s: %s", self.path, refused)
