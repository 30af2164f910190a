"""End to end: the real `townhall tui` in a real terminal (tmux, 120x40) on the real model.

Watch turns appear, pause, interject, quit with the quit key, then read the database
with the sqlite3 module as any other tool would.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.model]

TURN = re.compile(r"turn (\d+) of 40")
INTERJECTION = "What about parking for the market?"
TOWNHALL = """
motion = "The old rail yard should become a skate park."
participants = ["Stacy", "Walt", "Priya"]
policy = "round_robin"
max_turns = 40
closing_phrase = "this meeting is adjourned"
n_ctx = 1024

[sampling]
max_tokens = 24
seed = 11
"""


class Tmux:
    """A private tmux server (its own socket, in the test's temp dir) that never touches a user's sessions."""

    def __init__(self, folder: Path) -> None:
        self.socket = str(folder / f"tmux-{uuid.uuid4().hex[:8]}.sock")

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # COLUMNS/LINES from the test runner would override the 120x40 terminal for Textual.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=check, env=env)

    def screen(self, target: str = "th") -> str:
        result = self("capture-pane", "-p", "-t", target, check=False)
        return result.stdout

    def alive(self, target: str = "th") -> bool:
        """True while the app's process runs (the pane itself stays: remain-on-exit)."""
        result = self("display-message", "-p", "-t", target, "#{pane_dead}", check=False)
        return result.returncode == 0 and result.stdout.strip() == "0"

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 90.0, target: str = "th") -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen(target)
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}")

    def keys(self, *keys: str, literal: bool = False, target: str = "th") -> None:
        self("send-keys", "-t", target, *(["-l"] if literal else []), *keys)


def test_townhall_in_tmux_pause_interject_quit(tmp_path: Path, model_path: Path) -> None:
    # A real terminal is the point of this test: without tmux it fails rather than skips.
    assert shutil.which("tmux"), "tmux is required for the end-to-end test (apt-get install tmux)"
    spec_file = tmp_path / "hall.toml"
    spec_file.write_text(TOWNHALL)
    db = tmp_path / "e2e.db"
    env = {
        "TOWNHALL_CONFIG_DIR": os.environ["TOWNHALL_CONFIG_DIR"],
        "TOWNHALL_DATA_DIR": os.environ["TOWNHALL_DATA_DIR"],
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
    }
    # Textual draws on stderr, so it is not redirected; the pane is kept after exit to read.
    command = f"{sys.executable} -m townhall tui {spec_file} --db {db} --model {model_path} --n-ctx 1024 --threads 2"
    tmux = Tmux(tmp_path)
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    tmux("new-session", "-d", "-s", "th", "-x", "120", "-y", "40", *env_args, command)
    try:
        tmux("set-option", "-t", "th", "remain-on-exit", "on")
        tmux("set-option", "-t", "th", "escape-time", "0", check=False)
        tmux.wait_for(lambda s: "Motion:" in s, "the first screen", timeout=20)
        screen = tmux.wait_for(lambda s: bool(TURN.search(s)) and int(TURN.search(s).group(1)) >= 3, "two turns done")
        assert "Stacy" in screen and "#1" in screen  # turn labels in the transcript
        from llama_cpp import llama_supports_gpu_offload

        gpu = bool(llama_supports_gpu_offload())  # the same build the app runs on
        assert ("GPU · " in screen) == gpu and ("CPU · " in screen) != gpu  # the header tells the truth
        tmux.keys("p")
        tmux.wait_for(lambda s: len(s.splitlines()) > 1 and "paused" in s.splitlines()[1],
                      "the paused state in the header")
        tmux.keys("i")
        time.sleep(0.3)
        tmux.keys(INTERJECTION, literal=True)
        tmux.keys("Enter")
        tmux.wait_for(lambda s: "Audience" in s and INTERJECTION in s, "the interjection in the transcript")
        tmux.keys("Escape")
        time.sleep(0.5)
        tmux.keys("q")
        deadline = time.monotonic() + 30
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive(), "the app did not quit on the quit key"
        after = tmux("capture-pane", "-p", "-S", "-200", "-t", "th").stdout
        assert "Traceback" not in after and "error" not in after.lower(), after
    finally:
        tmux("kill-server", check=False)
    with sqlite3.connect(db) as conn:
        sessions = conn.execute("SELECT id, motion, status FROM sessions").fetchall()
        assert len(sessions) == 1 and sessions[0][1] == "The old rail yard should become a skate park."
        session_id = sessions[0][0]
        rows = conn.execute(
            "SELECT speaker, kind, content, status FROM turns WHERE session_id = ? ORDER BY turn_index", (session_id,)
        ).fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    agent_rows = [r for r in rows if r[1] == "agent"]
    assert len(agent_rows) >= 2 and all(r[3] != "streaming" for r in rows)
    assert ("Audience", "audience", INTERJECTION, "complete") in rows
