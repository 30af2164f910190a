"""What an OpenAI-compatible server says about itself, for the engine and `townhall doctor`.

Every such server answers `/v1/models`. llama.cpp's llama-server also answers `/props`
(context size, slot count, chat template, build) and `/slots`; llama-cpp-python's
server answers `/extras/tokenize`. Which of these answer tells us what we talk to, and
that decides whether per-agent slot pinning (`id_slot` + `cache_prompt`) is worth
sending. Nothing here claims what the server does not say: we cannot see its GPU.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from townhall.errors import BackendUnavailableError, ConfigError, GenerationError

ServerKind = Literal["llama-server", "llama-cpp-python", "openai-compatible"]


@dataclass(frozen=True)
class SlotInfo:
    id: int
    n_ctx: int | None = None
    busy: bool | None = None


@dataclass
class ServerInfo:
    base_url: str  # the server root, without /v1
    kind: ServerKind
    models: list[str] = field(default_factory=list)
    n_ctx: int | None = None  # per slot, when the server says
    total_slots: int | None = None
    slots: list[SlotInfo] = field(default_factory=list)
    chat_template: str | None = None
    build: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pins_slots(self) -> bool:
        """Whether `id_slot` + `cache_prompt` mean something to this server."""
        return self.kind == "llama-server"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["chat_template"] = bool(self.chat_template)  # the template itself is long; say if it exists
        return data

    def report_lines(self) -> list[str]:
        """Plain lines for `townhall doctor --backend openai`."""
        lines = [
            f"server: {self.base_url}",
            f"kind: {self.kind}",
            f"models: {', '.join(self.models) if self.models else '(none listed)'}",
        ]
        if self.n_ctx is not None:
            lines.append(f"context per slot: {self.n_ctx} tokens")
        if self.total_slots is not None:
            lines.append(f"slots: {self.total_slots}")
        for slot in self.slots:
            state = "unknown" if slot.busy is None else ("busy" if slot.busy else "idle")
            ctx = f", n_ctx {slot.n_ctx}" if slot.n_ctx is not None else ""
            lines.append(f"  slot {slot.id}: {state}{ctx}")
        if self.build:
            lines.append(f"build: {self.build}")
        lines.append(f"chat template: {'yes' if self.chat_template else 'none reported'}")
        lines.append(
            "prefix reuse: per-agent slot pinning (id_slot + cache_prompt)"
            if self.pins_slots
            else "prefix reuse: whatever the server does on its own (no slots to pin)"
        )
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


# llama-server answers with this minimal ChatML template (llama.cpp common/chat.cpp,
# CHATML_TEMPLATE_SRC) when the model carries none, e.g. a base model: it is not the model's.
LLAMA_SERVER_FALLBACK_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}"
)


def effective_chat_template(template: object) -> str | None:
    """The model's own template, or None when there is none (or only llama-server's fallback)."""
    if not isinstance(template, str) or not template.strip():
        return None
    if template.strip() == LLAMA_SERVER_FALLBACK_TEMPLATE.strip():
        return None
    return template


def server_root(base_url: str | None) -> str:
    """Normalise `http://host:port[/prefix][/v1][/]` to the root the API paths hang from.

    Users paste either form (OpenAI clients want `/v1`, llama-server's docs show the
    bare host); both work.
    """
    if not base_url or not base_url.strip():
        raise ConfigError("--base-url is required with --backend openai (e.g. http://127.0.0.1:8080/v1)")
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--base-url {base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8080/v1)")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def api_key_from_env(api_key_env: str | None) -> str | None:
    """Read the key from the named variable; the key itself never leaves this process."""
    if not api_key_env:
        return None
    value = os.environ.get(api_key_env)
    if not value:
        raise ConfigError(f"environment variable {api_key_env} (named by --api-key-env) is not set or empty")
    return value


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def one_line(text: str, limit: int = 240) -> str:
    """Collapse a server's message to one line a user can read."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_message(response: httpx.Response) -> str:
    """The server's own words from an error response, whatever shape it uses."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message: Any = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail")
        elif err:
            message = err
        message = message or body.get("detail") or body.get("message")
    if not message:
        message = response.text or response.reason_phrase
    if not isinstance(message, str):
        message = str(message)
    return one_line(f"HTTP {response.status_code}: {message}")


async def _get_json(client: httpx.AsyncClient, path: str) -> Any | None:
    """GET a JSON document; None when the endpoint is absent or not JSON."""
    try:
        response = await client.get(path)
    except httpx.TimeoutException:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


async def _models(client: httpx.AsyncClient, root: str) -> list[str]:
    """The model ids `/v1/models` lists; a server that answers it otherwise is no OpenAI one."""
    try:
        response = await client.get("/v1/models")
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise BackendUnavailableError(
            f"cannot reach the inference server at {root}: {_connect_reason(exc)}; is it running?"
        ) from None
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(
            f"inference server at {root} did not answer /v1/models: {one_line(repr(exc))}") from None
    if response.status_code in (401, 403):
        raise GenerationError(
            f"inference server at {root} refused us ({error_message(response)}); check --api-key-env"
        )
    if response.status_code != 200:
        raise GenerationError(f"inference server at {root} failed on /v1/models ({error_message(response)})")
    try:
        listing = response.json()
        models = [str(m["id"]) for m in listing.get("data", []) if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError, TypeError):
        raise GenerationError(
            f"{root}/v1/models did not return an OpenAI model list; is this an OpenAI-compatible server?") from None
    return models


async def probe(client: httpx.AsyncClient, root: str) -> ServerInfo:
    """Ask the server what it is. `client` has `root` as its base URL and any auth header."""
    info = ServerInfo(base_url=root, kind="openai-compatible", models=await _models(client, root))
    props = await _get_json(client, "/props")
    if isinstance(props, dict) and ("default_generation_settings" in props or "total_slots" in props):
        info.kind = "llama-server"
        settings = props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        info.n_ctx = int(n_ctx) if isinstance(n_ctx, int) else None
        slots_total = props.get("total_slots")
        info.total_slots = int(slots_total) if isinstance(slots_total, int) else None
        info.chat_template = effective_chat_template(props.get("chat_template"))
        build = props.get("build_info")
        info.build = str(build) if build else None
        slots = await _get_json(client, "/slots")
        if isinstance(slots, list):
            info.slots = [
                SlotInfo(
                    id=int(s.get("id", i)),
                    n_ctx=s.get("n_ctx") if isinstance(s.get("n_ctx"), int) else None,
                    busy=bool(s["is_processing"]) if "is_processing" in s else None,
                )
                for i, s in enumerate(slots)
                if isinstance(s, dict)
            ]
            if info.total_slots is None:
                info.total_slots = len(info.slots)
            if info.slots and info.slots[0].n_ctx is not None:
                info.n_ctx = info.slots[0].n_ctx
        else:
            info.notes.append("/slots is not enabled (start llama-server with --slots to see them)")
        if info.total_slots is None:
            info.total_slots = 1
        return info

    try:
        counted = await client.post("/extras/tokenize/count", json={"input": ""})
    except httpx.HTTPError:
        counted = None
    if counted is not None and counted.status_code == 200:
        info.kind = "llama-cpp-python"
        info.notes.append("llama-cpp-python serves one request at a time and reports no context size or slots")
    return info


def _connect_reason(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    text = str(exc).lower()
    if "refused" in text or "all connection attempts failed" in text:
        return "connection refused"
    return one_line(str(exc)) or type(exc).__name__


async def aserver_info(base_url: str, *, api_key_env: str | None = None, timeout_s: float = 5.0) -> ServerInfo:
    root = server_root(base_url)
    headers = auth_headers(api_key_from_env(api_key_env))
    async with httpx.AsyncClient(base_url=root, headers=headers, timeout=timeout_s) as client:
        return await probe(client, root)


def server_info(base_url: str | None, *, api_key_env: str | None = None, timeout_s: float = 5.0) -> ServerInfo:
    """Blocking entry point for the CLI: `townhall doctor --backend openai --base-url URL`.

    Raises BackendUnavailableError / GenerationError / ConfigError with a one-line message.
    """
    return asyncio.run(aserver_info(server_root(base_url), api_key_env=api_key_env, timeout_s=timeout_s))
