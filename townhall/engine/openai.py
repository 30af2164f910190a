"""The engine behind an OpenAI-compatible server (llama-server, vLLM, Ollama, llama-cpp-python).

Same interface as the local engine; the KV states live in the server. Townhall's
speed idea survives the move because each agent's prompt only grows at the end: on
llama-server each agent is pinned to a slot (`id_slot`) with `cache_prompt`, so only
the new tail is evaluated; vLLM's automatic prefix caching finds the shared prefix on
its own. Faults (refused connections, timeouts, 5xx, cut streams, malformed events)
are retried a bounded number of times with backoff; then the Generation ends with a
one-line TownhallError, keeping every piece of text already streamed.

Anti-echo decoding over HTTP: llama-server runs llama.cpp's DRY sampler, so `dry_*` go to
it when `dry_multiplier` > 0. `min_tokens` is sent as vLLM names it (llama-server ignores
it). The n-gram ban (`no_repeat_ngram_size` with `banned_texts`) cannot be done here: it
needs the token ids of every step, which the API never exposes, so it is not sent and
`info.decoding` says so; the scheduler resamples echoing turns instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from townhall.engine.base import (
    DecodingSupport,
    EngineInfo,
    Generation,
    GenerationRequest,
    GenerationStats,
    ProbeMethod,
    ProbeResult,
)
from townhall.engine.config import EngineConfig
from townhall.engine.server_info import (
    ServerInfo,
    api_key_from_env,
    auth_headers,
    one_line,
    probe,
    server_root,
)
from townhall.engine.openai_stream import (
    Progress,
    StreamReader,
    local_tps,
    refused,
    request_body,
    take_prefill,
    take_prompt_size,
    take_usage,
    with_retries,
)
from townhall.engine.stops import StopMatcher
from townhall.errors import GenerationError, TownhallError

SERVER_STREAMS = 4  # streams at once to a server that says nothing of its slots (vLLM and others)


class OpenAIEngine:
    """An Engine speaking the OpenAI HTTP API with streaming, through one httpx.AsyncClient."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key_env: str | None = None,
        n_ctx: int = 4096,
        pin_slots: bool | None = None,
        max_tries: int = 3,
        backoff_s: float = 0.5,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
        streams: int = 1,
    ) -> None:
        """`pin_slots=None` detects llama-server; True/False forces slot pinning on or off.

        `streams`: how many requests the caller keeps in flight (`generate --parallel N`).
        With more than one, agents are not pinned to slots: N conversations' agents would
        collide on the same few slots and queue behind each other; unpinned, llama-server
        gives each request an idle slot, preferring the one whose cache shares its prefix.
        """
        self.root = server_root(base_url)
        self._api_key_env = api_key_env
        self._requested_model = model
        self._n_ctx = n_ctx
        self._pin_override = pin_slots
        self.streams = max(1, streams)
        self.max_tries = max(1, max_tries)
        self.backoff_s = backoff_s
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s, write=30.0, pool=None)
        self._client: httpx.AsyncClient | None = None
        self.server: ServerInfo | None = None
        self._model: str | None = model
        self._gate: asyncio.Semaphore | None = None
        self._slots = 1
        self._slot_of: dict[str, int] = {}
        self._slot_owner: dict[int, str] = {}
        self._state_tokens: dict[str, int] = {}
        self._fresh: set[str] = set()  # forgotten agents: evaluate their next prompt from scratch
        self._tokenize_path: str | None = None
        self._tokenize_overhead = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.reports_reuse = False  # set once the server has told us how much prompt it reused
        # "logprobs" until the server answers a probe without token probabilities; then "choice".
        self._probe_method: ProbeMethod = "logprobs"
        self._info = self._make_info()

    @classmethod
    def from_config(cls, config: EngineConfig) -> OpenAIEngine:
        return cls(
            server_root(config.base_url),
            model=config.api_model,
            api_key_env=config.api_key_env,
            n_ctx=config.n_ctx,
            streams=config.parallel,
        )

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEngine({self.root!r}, model={self._model!r})"

    # -- Engine protocol -----------------------------------------------------
    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def pins_slots(self) -> bool:
        if self._pin_override is not None:
            return self._pin_override
        return self.server is not None and self.server.pins_slots and self.streams == 1

    async def start(self) -> None:
        if self._client is not None:
            return
        headers = auth_headers(api_key_from_env(self._api_key_env))
        client = httpx.AsyncClient(base_url=self.root, headers=headers, timeout=self._timeout)
        try:
            self.server = await with_retries(lambda: probe(client, self.root), self.max_tries, self.backoff_s)
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        server = self.server
        if self._model is None:
            if not server.models:
                await self.aclose()
                raise GenerationError(f"inference server at {self.root} lists no models; pass --api-model NAME")
            self._model = server.models[0]
        self._slots = max(1, server.total_slots or 1)
        self._gate = asyncio.Semaphore(self.max_streams)
        # llama-server and vLLM answer /tokenize (on a 404 we fall back to an estimate);
        # llama-cpp-python has /extras/tokenize/count, which counts a BOS with every text.
        self._tokenize_overhead = 0
        if server.kind == "llama-cpp-python":
            self._tokenize_path = "/extras/tokenize/count"
            self._tokenize_overhead = await self._count_raw("") or 0
        else:
            self._tokenize_path = "/tokenize"
        self._info = self._make_info()

    @property
    def max_streams(self) -> int:
        """Requests sent at once (more wait here). llama-cpp-python interrupts a running stream
        when any other request arrives, so it gets one at a time; llama-server one per slot
        (`-np`); any other server (vLLM batches on its own) `SERVER_STREAMS`, or the
        caller's `streams` if more."""
        kind = self.server.kind if self.server is not None else None
        if kind == "llama-cpp-python":
            return 1
        if kind == "llama-server":
            return self._slots
        return max(SERVER_STREAMS, self.streams)

    def generate(self, request: GenerationRequest) -> Generation:
        generation = Generation(request)
        task = asyncio.get_running_loop().create_task(self._run(generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return generation

    async def count_tokens(self, text: str) -> int:
        """The server's tokenizer when it has one; else about 3.5 characters a token."""
        if self._client is not None and self._tokenize_path is not None:
            async with self._gated():
                counted = await self._count_raw(text)
            if counted is not None:
                return max(0, counted - self._tokenize_overhead)
        return _estimate_tokens(text)

    def state_tokens(self, agent_id: str) -> int:
        """Tokens we know the server holds for this agent: only on a slot it still owns."""
        slot = self._slot_of.get(agent_id)
        if not self.pins_slots or slot is None or self._slot_owner.get(slot) != agent_id:
            return 0
        return self._state_tokens.get(agent_id, 0)

    def forget(self, agent_id: str) -> None:
        self._state_tokens.pop(agent_id, None)
        self._fresh.add(agent_id)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def prefetch(self, agent_id: str, prompt: str) -> bool:
        """Warm an agent's slot with its next prompt while another agent speaks.

        Not part of the Engine protocol: only llama-server with more than one slot can
        evaluate a second prompt alongside the running one. It sends the prompt to the
        agent's slot with `n_predict: 0` and `cache_prompt: true` (evaluate and keep,
        generate nothing), so the turn itself finds only its last line new. Returns
        False, doing nothing, where that cannot help; a failure is only a lost warm-up.
        """
        if self._client is None or not self.pins_slots or self._slots < 2:
            return False
        body = {"prompt": prompt, "n_predict": 0, "cache_prompt": True, "id_slot": self._slot_for(agent_id)}
        try:
            response = await self._client.post("/completion", json=body)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        self._slot_owner[self._slot_for(agent_id)] = agent_id
        self._fresh.discard(agent_id)
        return True

    # -- the stance probe ----------------------------------------------------------
    async def probe(self, agent_id: str | None, prompt: str, choices: Sequence[str]) -> ProbeResult:
        """The server's probabilities of each choice as the next token (llama-server's `n_probs`,
        OpenAI-style `logprobs`); where it returns none, a one-token answer constrained to the
        choices (grammar / vLLM's `guided_choice`), and `info.stance_probe` says "choice" from then on.

        On llama-server the probe goes to the agent's own slot with `cache_prompt`, so it costs
        only the cue, and the agent's next turn still finds its whole transcript cached.
        """
        if self._client is None:
            raise GenerationError("the openai engine is not started (await engine.start() first)")
        started = time.perf_counter()
        choices = tuple(choices)
        method: ProbeMethod = "logprobs"
        probabilities = None
        async with self._gated():
            if self._probe_method == "logprobs":
                probabilities = await self._probe_logprobs(agent_id, prompt, choices)
                if probabilities is None:
                    self._probe_method = "choice"
                    self._info = self._make_info()
            if probabilities is None or not any(probabilities):
                method = "choice"
                probabilities = await self._probe_choice(prompt, choices)
        return ProbeResult(choices, tuple(probabilities), method, total_ms=(time.perf_counter() - started) * 1000)

    async def _probe_post(self, path: str, body: dict[str, Any]) -> Any:
        assert self._client is not None
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise GenerationError(f"inference server {self.root}: stance probe failed ({refused(exc)})") from None
        if response.status_code >= 400:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    async def _probe_logprobs(self, agent_id: str | None, prompt: str, choices: tuple[str, ...]) -> list[float] | None:
        """Each choice's probability from the server's top next tokens; None when it sends none."""
        if self.server is not None and self.server.kind == "llama-server":
            body: dict[str, Any] = {"prompt": prompt, "n_predict": 1, "n_probs": 20, "temperature": 0,
                                    "cache_prompt": agent_id is not None and agent_id not in self._fresh}
            if agent_id is not None and self.pins_slots:
                body["id_slot"] = self._slot_for(agent_id)
            top = _top_from_llama_server(await self._probe_post("/completion", body))
        else:
            body = {"model": self._model, "prompt": prompt, "max_tokens": 1, "logprobs": 20, "temperature": 0}
            top = _top_from_openai(await self._probe_post("/v1/completions", body))
        if top is None:
            return None
        return [sum(p for token, p in top if token.strip().casefold() == choice.strip().casefold())
                for choice in choices]

    async def _probe_choice(self, prompt: str, choices: tuple[str, ...]) -> list[float]:
        """1.0 for the choice a short answer constrained to the choices begins with, else 0."""
        grammar = "root ::= " + " | ".join(json.dumps(c) for c in choices)
        body = {"model": self._model, "prompt": prompt, "max_tokens": 4, "temperature": 0, "grammar": grammar,
                "guided_choice": list(choices)}
        data = await self._probe_post("/v1/completions", body)
        text = ""
        if isinstance(data, dict) and isinstance(data.get("choices"), list) and data["choices"]:
            text = str(data["choices"][0].get("text") or "")
        answer = text.strip().casefold()
        picked = [bool(answer) and answer.startswith(c.strip().casefold()) for c in choices]
        return [1.0 if hit else 0.0 for hit in picked]

    # -- internals -----------------------------------------------------------
    def _make_info(self) -> EngineInfo:
        server = self.server
        name = self._model or "(server default)"
        if "/" in name and name.endswith(".gguf"):
            name = name.rsplit("/", 1)[-1]  # llama-cpp-python names its model by path
        return EngineInfo(
            backend="openai",
            model_name=name,
            n_ctx=(server.n_ctx if server and server.n_ctx else self._n_ctx),
            device=f"server · {self.root}",
            model_path=None,
            chat_template=server.chat_template if server else None,
            decoding=DecodingSupport(ngram_ban=False, min_tokens=False, dry=self._runs_dry),
            stance_probe=self._probe_method,
        )

    @property
    def _runs_dry(self) -> bool:
        return self.server is not None and self.server.kind == "llama-server"

    @contextlib.asynccontextmanager
    async def _gated(self) -> AsyncIterator[None]:
        if self._gate is None:
            yield
        else:
            async with self._gate:
                yield

    async def _count_raw(self, text: str) -> int | None:
        assert self._client is not None
        path = self._tokenize_path
        if path is None:
            return None
        if path == "/extras/tokenize/count":
            body: dict[str, Any] = {"input": text}
        else:  # llama-server reads `content`, vLLM reads `model` + `prompt`
            body = {"content": text, "prompt": text, "model": self._model, "add_special": False,
                    "add_special_tokens": False}
        try:
            response = await self._client.post(path, json=body)
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("count"), int):
                return int(data["count"])
            if isinstance(data.get("tokens"), list):
                return len(data["tokens"])
        if self._client is not None and path != "/extras/tokenize/count":
            self._tokenize_path = None  # no tokenizer endpoint here: stop asking
        return None

    def _slot_for(self, agent_id: str) -> int:
        """Agents take slots in turn, all but the last, which one-off requests use."""
        if agent_id not in self._slot_of:
            agent_slots = self._slots - 1 if self._slots > 1 else 1
            self._slot_of[agent_id] = len(self._slot_of) % agent_slots
        return self._slot_of[agent_id]

    @property
    def _oneoff_slot(self) -> int | None:
        # Unpinned, llama-server would put a one-off in the slot with the most similar
        # prefix: an agent's (they share the header), wiping that agent's cache.
        return self._slots - 1 if self.pins_slots and self._slots > 1 else None

    def _reader(self) -> StreamReader:
        return StreamReader(lambda: self._client, self.root, self._body, max_tries=self.max_tries,
                            backoff_s=self.backoff_s, read_timeout_s=self._timeout.read)

    def _body(self, request: GenerationRequest, progress: Progress) -> tuple[str, dict[str, Any]]:
        return request_body(request, progress, model=self._model, runs_dry=self._runs_dry,
                            placement=self._placement(request.agent_id))

    def _placement(self, agent: str | None) -> dict[str, Any]:
        """Where the server evaluates a request, and whether it keeps the prompt's cache."""
        if agent is not None:
            placement: dict[str, Any] = {"cache_prompt": agent not in self._fresh}
            if self.pins_slots:
                placement["id_slot"] = self._slot_for(agent)
            return placement
        placement = {"cache_prompt": False}  # a one-off: nothing of it is worth keeping
        if self._oneoff_slot is not None:
            placement["id_slot"] = self._oneoff_slot
        return placement

    async def _run(self, generation: Generation) -> None:
        request = generation.request
        stats = GenerationStats()
        progress = Progress()
        matcher = StopMatcher(request.sampling.stop)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            if self._client is None:
                raise GenerationError("the openai engine is not started (await engine.start() first)")
            async with self._gated():
                # Generation.cancel() only sets a flag; watch it, so a cancel lands even
                # while the server is still evaluating the prompt and sends nothing.
                reader = asyncio.ensure_future(self._reader().run(generation, progress, matcher))
                try:
                    while not reader.done():
                        await asyncio.wait({reader}, timeout=0.05)
                        if generation.cancelled and not reader.done():
                            reader.cancel()
                    await reader
                except asyncio.CancelledError:
                    if not generation.cancelled:
                        raise
                finally:
                    if not reader.done():
                        reader.cancel()
                if generation.cancelled:
                    progress.finish = "cancelled"
                await self._fill_stats(stats, request, progress)
        except TownhallError as exc:
            error = exc
            progress.finish = "error"
        except asyncio.CancelledError:
            progress.finish = "cancelled"
            error = GenerationError("the generation was stopped because the engine closed")
        except Exception as exc:  # noqa: BLE001 - whatever broke, the turn ends with one line
            error = GenerationError(f"openai engine failed: {one_line(repr(exc))}")
            progress.finish = "error"
        generation.feed(matcher.flush())
        elapsed = time.perf_counter() - started
        stats.total_ms = elapsed * 1000
        stats.finish_reason = progress.finish or "stop"
        if stats.generated_tokens == 0:
            stats.generated_tokens = progress.pieces
        if progress.first_piece_at is not None:
            stats.ttft_ms = (progress.first_piece_at - started) * 1000
        if not stats.decode_tps:
            stats.decode_tps = local_tps(progress, stats.generated_tokens)
        if request.agent_id is not None and error is None:
            self._remember(request.agent_id, stats)
        generation.finish(stats, error)

    def _remember(self, agent_id: str, stats: GenerationStats) -> None:
        self._fresh.discard(agent_id)
        self._state_tokens[agent_id] = stats.prompt_tokens + stats.generated_tokens
        if self.pins_slots:
            self._slot_owner[self._slot_for(agent_id)] = agent_id

    async def _fill_stats(self, stats: GenerationStats, request: GenerationRequest, progress: Progress) -> None:
        if take_usage(stats, progress):
            self.reports_reuse = True
        if not take_prompt_size(stats, progress):  # the server did not say (llama-cpp-python): ask its tokenizer
            messages = request.messages
            text = request.prompt if messages is None else "\n".join(m.get("content", "") for m in messages)
            counted = await self._count_raw(text) if self._tokenize_path else None
            stats.prompt_tokens = counted if counted is not None else _estimate_tokens(text)
        take_prefill(stats, progress)


def _top_from_llama_server(data: Any) -> list[tuple[str, float]] | None:
    """(token text, probability) of the first generated position, from either of
    llama-server's formats (`top_logprobs` with log-probabilities, or older `probs`)."""
    if not isinstance(data, dict):
        return None
    positions = data.get("completion_probabilities")
    if not isinstance(positions, list) or not positions or not isinstance(positions[0], dict):
        return None
    first = positions[0]
    if isinstance(first.get("top_logprobs"), list):
        return [(str(t.get("token", "")), math.exp(float(t["logprob"])))
                for t in first["top_logprobs"] if isinstance(t, dict) and "logprob" in t]
    if isinstance(first.get("probs"), list):
        return [(str(t.get("tok_str", "")), float(t["prob"]))
                for t in first["probs"] if isinstance(t, dict) and "prob" in t]
    return None


def _top_from_openai(data: Any) -> list[tuple[str, float]] | None:
    """(token text, probability) from an OpenAI-style completion's `logprobs.top_logprobs[0]`."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        return None
    logprobs = data["choices"][0].get("logprobs") if isinstance(data["choices"][0], dict) else None
    top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    if not isinstance(top, list) or not top or not isinstance(top[0], dict):
        return None
    return [(str(token), math.exp(float(value))) for token, value in top[0].items() if value is not None]


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 3.5) if text else 0
