"""`townhall web`: a real server on a loopback port, the page over HTTP, the app over its websocket.

The tabs run `townhall watch` on a recorded session, so no model loads; the browser itself is
in tests/browser (`make test-browser`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from store_support import open_store, record_debate
from web_support import WebServer, screen_words, shows_turn

from townhall.tui.web import app_command, is_loopback, page_url

LINES = [("Cy", "Welcome to the town hall on the new bridge."),
         ("Ada", "I support the bridge because the ferry wastes an hour of every commuter's day."),
         ("Bo", "I oppose it because the tolls would fall on the people who can least afford them.")]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    store = open_store(tmp_path)
    asyncio.run(record_debate(store, "web01", LINES, outcome=True))
    store.close()
    return tmp_path / "th.db"


async def read_screen(url: str, until: str, timeout: float = 30.0, size: tuple[int, int] = (120, 36)) -> str:
    """Open the websocket the page opens and collect what the app draws until `until` shows."""
    seen = b""
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(f"{url.replace('http', 'ws', 1)}/ws?width={size[0]}&height={size[1]}") as ws:
            async def collect() -> None:
                nonlocal seen
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        seen += message.data
                        if shows_turn(screen_words(seen), until):
                            return

            try:
                await asyncio.wait_for(collect(), timeout)
            except TimeoutError:
                pass
    return screen_words(seen)


async def test_the_page_and_its_app_arrive_over_http_and_the_websocket(recorded: Path, tmp_path: Path) -> None:
    with WebServer(["watch", "web01", "--db", str(recorded)], tmp_path / "web.log") as server:
        assert server.url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as client:
            async with client.get(server.url) as page:
                assert page.status == 200
                html = await page.text()
            assert f'data-session-websocket-url="{server.url.replace("http", "ws", 1)}/ws"' in html
            async with client.get(f"{server.url}/static/js/textual.js") as script:
                assert script.status == 200  # served from the package: the page needs no internet
        text = await read_screen(server.url, LINES[2][1])
    assert "Motion:" in text and "Build a new bridge over the river" in text
    for _, line in LINES:
        assert shows_turn(text, line), f"not on the page's screen: {line!r}\n{text[-3000:]}"


async def test_two_tabs_each_get_their_own_app(recorded: Path, tmp_path: Path) -> None:
    with WebServer(["watch", "web01", "--db", str(recorded)], tmp_path / "web.log") as server:
        first, second = await asyncio.gather(read_screen(server.url, LINES[1][1]),
                                             read_screen(server.url, LINES[1][1], size=(90, 30)))
    assert shows_turn(first, LINES[1][1]) and shows_turn(second, LINES[1][1])


@pytest.mark.parametrize(("args", "says"), [
    (["run"], "serves the TUI only"),
    (["tui", "--turns", "x"], "--turns"),
    (["--host", "0.0.0.0"], "add --public"),
])
def test_bad_requests_are_one_line_before_anything_is_served(args: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "townhall", "web", *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "townhall", "web", "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"townhall: error: port {port} on 127.0.0.1 is in use; choose another with --port"


def test_a_wider_host_needs_the_flag_and_is_warned_about(recorded: Path, tmp_path: Path) -> None:
    with WebServer(["--host", "0.0.0.0", "--public", "watch", "web01", "--db", str(recorded)],
                   tmp_path / "web.log") as server:
        assert not server.url.startswith("http://0.0.0.0")  # browsers elsewhere need a name, not the wildcard
    log = (tmp_path / "web.log").read_text()
    assert "warning: serving on 0.0.0.0, open to every machine that can reach it" in log


def test_loopback_and_commands() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    assert app_command(["watch", "a b"]).endswith("-m townhall watch 'a b'")  # quoted for the shell it runs in
    assert page_url("127.0.0.1", 8000) == "http://127.0.0.1:8000" and page_url("::1", 80) == "http://[::1]:80"
