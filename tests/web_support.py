"""Watching from outside: `townhall web` as a real process on a free loopback port, what its tabs
send, and the record as a third program reads it.

Shared by the websocket tests (tests/web), the browser test (tests/browser) and the
two-terminal test (tests/cli/test_e2e_watch_tmux.py).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78DEHM])")
URL_LINE = re.compile(r"Townhall on (http://\S+)")


def screen_words(data: bytes) -> str:
    """The text a terminal stream writes, escape sequences removed (cursor moves become spaces)."""
    return re.sub(r"\s+", " ", ANSI.sub(b" ", data).decode("utf-8", "replace"))


def shows_turn(text: str, content: str, words: int = 6) -> bool:
    """Whether the screen's text holds the first `words` words of a turn (a wrap may split it)."""
    wanted = [w.strip(".,;:!?\"'()*_") for w in content.split()[:words]]
    return all(w in text for w in wanted if w)


def said_so_far(db: Path, session_id: str | None = None) -> list[tuple[str, str]]:
    """The complete turns recorded so far (of one session, else all), as (speaker, text), read
    as a third program would: read-only, never blocking the writer."""
    where = "status = 'complete' AND content != ''" + (" AND session_id = ?" if session_id else "")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(f"SELECT speaker, content FROM turns WHERE {where} ORDER BY turn_index",
                            (session_id,) if session_id else ()).fetchall()
    return [(str(a), str(b)) for a, b in rows]


class WebServer:
    """`townhall web --port 0 ARGS...`, stopped with its tabs' processes (one process group)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log
        self.env = env
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WebServer:
        cmd = [sys.executable, "-m", "townhall", "web", "--port", "0", *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = URL_LINE.search(self.log_path.read_text(errors="replace"))
            if found:
                self.url = found.group(1)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.__exit__()
        raise AssertionError(f"townhall web did not start: {self.log_path.read_text(errors='replace')}")

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
