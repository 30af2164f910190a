"""Real servers on loopback for the openai-backend tests.

`LlamaCppServer` runs llama-cpp-python's own OpenAI-compatible server on the embedded
model in a subprocess on a free port, waits (bounded) until it answers, and always
stops it. `FaultServer` is a tiny threaded HTTP server of our own that misbehaves on
purpose (500s, malformed events, cut streams) and can impersonate llama-server's
`/props` and `/slots`, recording every request body it gets.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaCppServer:
    """`python -m llama_cpp.server` serving one GGUF; use as a context manager."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        threads: int = 2,
        api_key: str | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.model_path = model_path
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"
        self.n_ctx = n_ctx
        self.threads = threads
        self.api_key = api_key
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    def start(self) -> LlamaCppServer:
        import tempfile

        log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        self._log_path = Path(log.name)
        # llama_cpp.server's own model load, minus the repacked CPU weights that crash this
        # machine kind's build (see townhall.engine.system.without_cpu_repack).
        launcher = (
            "import runpy; from townhall.engine.system import without_cpu_repack\n"
            "with without_cpu_repack(): runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)"
        )
        cmd = [
            sys.executable, "-c", launcher,
            "--model", str(self.model_path),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads),
            "--verbose", "False",
        ]
        if self.api_key:
            cmd += ["--api_key", self.api_key]
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        while True:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}: {tail}")
            try:
                if httpx.get(f"{self.root}/v1/models", headers=headers, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"llama_cpp.server not ready within {self.ready_timeout_s}s: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 2000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Terminate, then kill if it lingers; safe to call twice."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def kill(self) -> None:
        """Die now, the way a crashed server does."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a server of our own that misbehaves on purpose ------------------------------
Behaviour = Callable[["FaultHandler", dict[str, Any]], None]


@dataclass
class FaultServer:
    """Routes POST /v1/* to `behaviour`; GET /props and /slots answer when `props` is set."""

    behaviour: Behaviour
    props: dict[str, Any] | None = None
    slots: list[dict[str, Any]] | None = None
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    connections: list[socket.socket] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultServer:
        server = self

        class Handler(FaultHandler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        for conn in self.connections:  # keep-alive connections too: the server is gone
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up on a misbehaving stream is the point, not an error."""


class FaultHandler(BaseHTTPRequestHandler):
    owner: FaultServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.owner.connections.append(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return None

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def event(self, payload: Any) -> None:
        self.chunk(f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n")

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self) -> None:
        """Drop the connection without ending the chunked body, like a crashed server."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        owner = self.owner
        if self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in owner.models]})
        elif self.path == "/props" and owner.props is not None:
            self.send_json(200, owner.props)
        elif self.path == "/slots" and owner.slots is not None:
            self.send_json(200, owner.slots)
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path in ("/tokenize", "/extras/tokenize/count"):
            self.send_json(404, {"error": {"message": "no tokenizer here"}})
            return
        body["_path"] = self.path
        body["_auth"] = self.headers.get("Authorization")
        self.owner.requests.append(body)
        self.owner.behaviour(self, body)


def completion_chunk(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": finish}], **extra}


def stream_words(handler: FaultHandler, words: list[str], *, done: bool = True, **final: Any) -> None:
    """A well-formed completion stream of `words`, then a finish chunk (with `final` extras)."""
    handler.start_stream()
    for word in words:
        handler.event(completion_chunk(word))
    handler.event(completion_chunk("", "stop", **final))
    if done:
        handler.event("[DONE]")
    handler.end_stream()
