"""End to end, two real terminals: a town hall in the TUI at a reading pace, and `townhall watch`
following it from a second terminal (tmux, 120x40 each) on the real model."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from test_e2e_tmux import TOWNHALL, Tmux
from web_support import said_so_far

pytestmark = [pytest.mark.e2e, pytest.mark.model]


def first_words(text: str, n: int = 4) -> str:
    return " ".join(text.split()[:n])


def test_a_tui_debate_watched_from_a_second_terminal(tmp_path: Path, model_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is required for the end-to-end test (apt-get install tmux)"
    spec_file = tmp_path / "hall.toml"
    spec_file.write_text(TOWNHALL.replace("max_turns = 40", "max_turns = 4"))
    db = tmp_path / "e2e.db"
    env = {"TOWNHALL_CONFIG_DIR": os.environ["TOWNHALL_CONFIG_DIR"],
           "TOWNHALL_DATA_DIR": os.environ["TOWNHALL_DATA_DIR"], "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    townhall = f"{sys.executable} -m townhall"
    tmux = Tmux(tmp_path)
    tmux("new-session", "-d", "-s", "th", "-x", "120", "-y", "40", *env_args,
         f"{townhall} tui {spec_file} --db {db} --model {model_path} --threads 2 --pace 600")
    try:
        tmux("set-option", "-t", "th", "remain-on-exit", "on")
        tmux.wait_for(lambda s: "600 wpm" in s, "the pace in the header", timeout=30)
        deadline = time.monotonic() + 90
        while not (db.exists() and said_so_far(db)):
            assert time.monotonic() < deadline, "the first turn was never recorded"
            time.sleep(0.2)
        tmux("new-session", "-d", "-s", "watch", "-x", "120", "-y", "40", *env_args, f"{townhall} watch --db {db}")
        tmux("set-option", "-t", "watch", "remain-on-exit", "on")
        tmux.wait_for(lambda s: "watching" in s or "the debate ended" in s, "the watcher", timeout=30, target="watch")
        end = tmux.wait_for(lambda s: "the debate ended" in s, "the end, in the watcher", timeout=180, target="watch")
        turns = said_so_far(db)
        assert len(turns) >= 3
        shown = tmux("capture-pane", "-p", "-S", "-400", "-t", "watch").stdout
        for speaker, content in turns[-2:]:  # the latest turns are on the watcher's screen
            assert speaker in end and first_words(content) in " ".join(shown.split()), (speaker, content, end)
        assert "Interject" not in end  # no box, no steering keys in a watcher
        for target in ("watch", "th"):
            tmux.keys("q", target=target)
        deadline = time.monotonic() + 30
        while (tmux.alive("th") or tmux.alive("watch")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive("watch") and not tmux.alive("th")
        for target in ("watch", "th"):
            after = tmux("capture-pane", "-p", "-S", "-200", "-t", target).stdout
            assert "Traceback" not in after, after
    finally:
        tmux("kill-server", check=False)
