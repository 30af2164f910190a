"""A person starts a debate in one terminal and watches it in a browser tab (`make test-browser`).

Real parts throughout: `townhall run` on the embedded model records a debate; `townhall web
watch ID` serves the watcher; headless Chromium from the distribution's packages opens the
page (driven by Playwright, which never downloads a browser of its own here). The test reads
what the page's websocket brings and saves a screenshot of the page; with
TOWNHALL_SCREENSHOT=PATH set it also writes it there (the README's picture comes from this test).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from web_support import WebServer, said_so_far, screen_words, shows_turn

pytestmark = [pytest.mark.browser, pytest.mark.model]

# What the page's websocket brings, kept in the page as text: Chromium's devtools report only the
# first few frames of this socket, so the page itself records what it was sent to draw.
RECORD_SCREEN = """
window.__townhallScreen = [];
const NativeSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new NativeSocket(...args);
  const decoder = new TextDecoder();
  socket.addEventListener('message', async (event) => {
    if (typeof event.data === 'string') return;
    const buffer = event.data instanceof Blob ? await event.data.arrayBuffer() : event.data;
    window.__townhallScreen.push(decoder.decode(buffer, {stream: true}));
  });
  return socket;
};
window.WebSocket.prototype = NativeSocket.prototype;
Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
"""
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


def chromium() -> str:
    path = os.environ.get("TOWNHALL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium: install the distribution's package (apt-get install chromium), as .ci/run does")
    return path


def first_session_id(stdout: object, deadline: float) -> str:
    """`townhall run --json` says its session id in its first event."""
    while time.monotonic() < deadline:
        line = stdout.readline()  # type: ignore[attr-defined]
        if not line:
            break
        event = json.loads(line)
        if event.get("type") == "start":
            return str(event["session"])
    raise AssertionError("townhall run printed no session id")


def test_a_debate_recorded_in_one_terminal_shows_in_a_browser_tab(model_path: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    db = tmp_path / "th.db"
    writer = subprocess.Popen(
        [sys.executable, "-m", "townhall", "run", "--turns", "6", "--db", str(db), "--json",
         "--model", str(model_path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        session_id = first_session_id(writer.stdout, time.monotonic() + 120)
        with WebServer(["watch", session_id, "--db", str(db)], tmp_path / "web.log") as server, \
                sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.add_init_script(RECORD_SCREEN)
            page.goto(server.url)
            page.wait_for_function("document.body.classList.contains('-first-byte')", timeout=60_000)
            page.focus(".xterm-helper-textarea")  # a focused tab: Textual draws the footer's keys only then
            deadline = time.monotonic() + 180
            shown: list[tuple[str, str]] = []
            while time.monotonic() < deadline:
                text = screen_words(page.evaluate("window.__townhallScreen.join('')").encode())
                recorded = said_so_far(db, session_id)
                shown = [turn for turn in recorded if shows_turn(text, turn[1])]
                if len(shown) >= 2 and writer.poll() is not None and len(shown) == len(recorded):
                    break
                time.sleep(0.5)
            assert writer.wait(timeout=120) == 0
            recorded = said_so_far(db, session_id)
            assert len(recorded) >= 2
            assert shown == recorded, f"the page never showed {[t for t in recorded if t not in shown]}"
            time.sleep(1.0)  # let the terminal paint the last frame
            picture = tmp_path / "web-watch.png"
            page.screenshot(path=str(picture))
            browser.close()
        assert picture.stat().st_size > 20_000  # a drawn terminal, not a blank page
        if target := os.environ.get("TOWNHALL_SCREENSHOT"):
            shutil.copyfile(picture, target)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
