"""The TUI as a web page: `townhall web` serves it with textual-serve.

textual-serve starts one app process per browser tab and relays its terminal over a
websocket, so every tab that opens `townhall tui` loads its own model; `townhall web watch`
tabs only read the database, which makes them the cheap way to show one debate to many.
The page is served on loopback unless the user asks for a wider host by flag (the CLI checks
that); anyone who can reach the port can start processes on this machine.
"""

from __future__ import annotations

import errno
import ipaddress
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from textual_serve.server import Server

from townhall.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (a name is loopback only if it is localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def app_command(args: Sequence[str]) -> str:
    """The shell line textual-serve runs per tab: this interpreter's townhall, so the page runs
    the same install as the command that served it (whatever is first on PATH)."""
    return shlex.join([sys.executable, "-m", "townhall", *args])


def free_port(host: str) -> int:
    """A port the OS says is free on `host` now (for `--port 0`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_port(host: str, port: int) -> None:
    """Fail early, in one line, where the server could not listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use; choose another with --port") from None
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host") from None


def page_url(host: str, port: int) -> str:
    """The address a browser opens; a wildcard host is reached by this machine's name."""
    name = socket.gethostname() if host in WILDCARD_HOSTS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"http://{name}:{port}"


class TownhallServer(Server):
    """textual-serve's server, announcing itself in Townhall's words instead of its banner."""

    def __init__(self, command: str, host: str, port: int, public_url: str,
                 announce: Callable[[str], None]) -> None:
        super().__init__(command, host=host, port=port, title="Townhall", public_url=public_url)
        self._announce = announce

    async def on_startup(self, app: Any) -> None:
        self._announce(f"Townhall on {self.public_url}  (serving `{self.command}` per tab; Ctrl+C stops)")
