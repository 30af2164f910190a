"""`townhall web`: the TUI in a browser tab, served with textual-serve.

Everything after the options is the app each tab runs: `watch [ID]` (read-only, no model)
or `tui` with its own arguments (the default). The arguments are parsed here, before the
server starts, so a mistake is one line now rather than an error page in every tab.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from townhall.errors import ConfigError

SERVED = ("tui", "watch")

HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")]
PublicOpt = Annotated[bool, typer.Option(
    "--public", help="Allow a host other than loopback: anyone who reaches the port can open tabs here.")]
UrlOpt = Annotated[Optional[str], typer.Option(
    "--url", help="The address browsers use, when it differs (a proxy or a name); default from host and port.")]

HELP = "\n\n".join([
    "Serve the TUI as a web page: open the printed address in a browser.",
    "ARGS is what each tab runs: `watch [ID] [--db PATH]` follows a debate another process is recording; "
    "`tui [TOWNHALL_FILE] [OPTIONS]` (the default) starts one.",
    "Each browser tab starts its own app process, so every `tui` tab loads its own model; `townhall web watch` "
    "tabs only read the database, the cheap way to show one debate to many people.",
    "The page is served on 127.0.0.1 unless --host and --public say otherwise.",
])
AppArgs = Annotated[Optional[list[str]], typer.Argument(
    metavar="ARGS", help="What each tab runs: `watch [ID]`, or `tui` and its arguments (the default).")]


def app_args(args: list[str], root: TyperGroup) -> list[str]:
    """The townhall command each tab runs, checked now: `tui` unless the args name `watch`."""
    if not args or args[0] not in root.commands:
        args = ["tui", *args]
    name = args[0]
    if name not in SERVED:
        raise ConfigError(f"`townhall web` serves the TUI only: `web tui [ARGS]` or `web watch [ID]`, not `{name}`")
    command = root.commands[name]
    try:
        command.make_context(f"townhall web {name}", list(args[1:]))
    except typer.TyperException as exc:  # the parser's usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise ConfigError(f"townhall web {name}: {message}") from None
    return args


def register(app: typer.Typer) -> None:
    """Add `townhall web`."""

    @app.command(
        "web",
        help=HELP,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
    )
    def web(
        args: AppArgs = None,
        host: HostOpt = "127.0.0.1",
        port: PortOpt = 8000,
        public: PublicOpt = False,
        url: UrlOpt = None,
    ) -> None:
        from townhall.tui.web import TownhallServer, app_command, check_port, free_port, is_loopback, page_url

        root = typer.main.get_command(app)
        assert isinstance(root, TyperGroup)
        args = app_args(list(args or []), root)
        if not is_loopback(host):
            if not public:
                raise ConfigError(f"--host {host} lets other machines open tabs that run townhall here; "
                                  "add --public to mean it, or leave --host out for 127.0.0.1")
            typer.secho(f"townhall web: warning: serving on {host}, open to every machine that can reach it; "
                        "each tab runs a townhall process here", err=True, fg="yellow")
        port = free_port(host) if port == 0 else port
        check_port(host, port)
        server = TownhallServer(app_command(args), host, port, url or page_url(host, port),
                                announce=lambda line: typer.echo(line))
        server.serve()
