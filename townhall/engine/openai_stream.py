"""One request's stream from an OpenAI-compatible server: its attempts, and chunks made pieces.

Faults (refused connections, timeouts, 5xx, cut streams, malformed events) are retried a
bounded number of times with backoff; a cut transcript stream continues where it stopped
(the text so far goes back as the end of the prompt). What a request has produced is kept
in `Progress` across attempts, so no piece is shown twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from townhall.engine.base import FinishReason, Generation, GenerationRequest, GenerationStats
from townhall.engine.server_info import error_message, one_line
from townhall.engine.sse import DONE, aiter_events, aiter_sse_lines
from townhall.engine.stops import StopMatcher
from townhall.errors import BackendUnavailableError, ContextOverflowError, GenerationError

T = TypeVar("T")
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
FINISH: dict[str, FinishReason] = {"stop": "stop", "eos": "stop", "length": "length", "max_tokens": "length"}


class Fault(Exception):
    """One failed attempt: what went wrong, and whether trying again could help."""

    def __init__(self, message: str, *, retryable: bool, unavailable: bool = False, context: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.unavailable = unavailable
        self.context = context


@dataclass
class Progress:
    """What a request has produced so far, kept across retries."""

    raw: str = ""  # everything the server sent, before our stop matcher
    pieces: int = 0
    first_piece_at: float | None = None
    last_piece_at: float | None = None
    finish: FinishReason | None = None
    usage: Mapping[str, Any] | None = None
    timings: Mapping[str, Any] | None = None


class StreamReader:
    """Streams one request into its Generation, retrying where another attempt can help.

    `body` builds the request's path and JSON for the progress so far (the engine knows the
    model, the slots and what the server supports); `client` is read at each attempt.
    """

    def __init__(
        self,
        client: Callable[[], httpx.AsyncClient | None],
        root: str,
        body: Callable[[GenerationRequest, Progress], tuple[str, dict[str, Any]]],
        *,
        max_tries: int,
        backoff_s: float,
        read_timeout_s: float | None,
    ) -> None:
        self._client = client
        self.root = root
        self._body = body
        self.max_tries = max_tries
        self.backoff_s = backoff_s
        self._read_timeout_s = read_timeout_s

    async def run(self, generation: Generation, progress: Progress, matcher: StopMatcher) -> None:
        """Try the request up to max_tries times; a cut transcript stream continues where it stopped."""
        request = generation.request
        last: Fault | None = None
        for n in range(self.max_tries):
            try:
                await self._attempt(generation, progress, matcher)
                return
            except Fault as fault:
                if progress.finish is not None:
                    return  # the turn was over; only the trailing usage/[DONE] went missing
                last = fault
                can_continue = request.messages is None or not progress.raw
                if not fault.retryable or not can_continue or n + 1 >= self.max_tries:
                    break
                if progress.pieces >= request.sampling.max_tokens:
                    progress.finish = "length"
                    return
                await asyncio.sleep(self.backoff_s * 2**n)
        assert last is not None
        tries = f" (after {n + 1} tries)" if n > 0 else ""
        message = f"inference server {self.root}: {last.message}{tries}"
        if last.context:
            raise ContextOverflowError(message)
        if last.unavailable:
            raise BackendUnavailableError(message)
        raise GenerationError(message)

    async def _attempt(self, generation: Generation, progress: Progress, matcher: StopMatcher) -> None:
        client = self._client()
        assert client is not None
        path, body = self._body(generation.request, progress)
        chat = path.endswith("chat/completions")
        try:
            async with client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    message = error_message(response)
                    raise Fault(
                        message,
                        retryable=response.status_code in RETRY_STATUS,
                        context=is_context_error(message),
                    )
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    await response.aread()
                    StreamReader._take_whole(response, generation, progress, matcher, chat)
                    return
                finished = False
                async for event in aiter_events(aiter_sse_lines(response.aiter_bytes())):
                    if event.data.strip() == DONE:
                        finished = True
                        break
                    try:
                        chunk = json.loads(event.data)
                    except ValueError:
                        raise Fault(f"malformed event in the stream: {one_line(event.data, 80)!r}",
                                     retryable=True) from None
                    if not isinstance(chunk, dict):
                        raise Fault(f"malformed event in the stream: {one_line(event.data, 80)!r}", retryable=True)
                    if chunk.get("error"):
                        err = chunk["error"]
                        message = one_line(err.get("message", err) if isinstance(err, dict) else err)
                        raise Fault(f"server error mid-stream: {message}", retryable=False,
                                     context=is_context_error(message))
                    if StreamReader._take_chunk(chunk, generation, progress, matcher, chat):
                        finished = True
                        if matcher.stopped or generation.cancelled:
                            break
                if not finished and not generation.cancelled and progress.finish is None:
                    raise Fault("the stream ended before the turn did (no [DONE])", retryable=True)
        except httpx.ConnectError as exc:
            raise Fault(refused(exc), retryable=True, unavailable=True) from None
        except httpx.ConnectTimeout:
            raise Fault("connection timed out", retryable=True, unavailable=True) from None
        except httpx.ReadTimeout:
            raise Fault(f"no data for {self._read_timeout_s:.0f} s (read timeout)", retryable=True) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise Fault(f"the connection closed mid-stream ({one_line(str(exc), 80) or type(exc).__name__})",
                         retryable=True, unavailable=True) from None
        except httpx.HTTPError as exc:
            raise Fault(one_line(f"{type(exc).__name__}: {exc}"), retryable=True) from None

    @staticmethod
    def _take_chunk(
        chunk: Mapping[str, Any], generation: Generation, progress: Progress, matcher: StopMatcher, chat: bool
    ) -> bool:
        """Apply one streamed chunk; True once the server said the turn is over."""
        if isinstance(chunk.get("usage"), Mapping):
            progress.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), Mapping):
            progress.timings = chunk["timings"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return False
        choice = choices[0]
        if not isinstance(choice, Mapping):
            raise Fault("malformed event in the stream: a choice is not an object", retryable=True)
        if chat:
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, Mapping) else None
        else:
            piece = choice.get("text")
        if piece is not None and not isinstance(piece, str):
            raise Fault("malformed event in the stream: text is not a string", retryable=True)
        if piece and not matcher.stopped:
            now = time.perf_counter()
            if progress.first_piece_at is None:
                progress.first_piece_at = now
            progress.last_piece_at = now
            progress.raw += piece
            progress.pieces += 1
            generation.feed(matcher.feed(piece))
        if matcher.stopped:
            progress.finish = "stop"
            return True
        reason = choice.get("finish_reason")
        if reason:
            progress.finish = FINISH.get(str(reason), "stop")
            return True
        if progress.pieces >= generation.request.sampling.max_tokens:
            progress.finish = "length"
            return True
        return False

    @staticmethod
    def _take_whole(
        response: httpx.Response, generation: Generation, progress: Progress, matcher: StopMatcher, chat: bool
    ) -> None:
        """A server that ignored `stream: true` sent one JSON body: take it as one piece."""
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise Fault(f"unexpected response: {one_line(response.text, 80)!r}", retryable=False) from None
        StreamReader._take_chunk(
            {"choices": [{"text": text, "delta": {"content": text}, "finish_reason": choice.get("finish_reason")}],
             "usage": body.get("usage"), "timings": body.get("timings")},
            generation, progress, matcher, chat,
        )
        progress.finish = progress.finish or "stop"


async def with_retries(attempt: Callable[[], Awaitable[T]], max_tries: int, backoff_s: float) -> T:
    """Run `attempt` up to `max_tries` times on connection faults, backing off between."""
    for n in range(max_tries):
        try:
            return await attempt()
        except BackendUnavailableError:
            if n + 1 >= max_tries:
                raise
            await asyncio.sleep(backoff_s * 2**n)
    raise AssertionError("unreachable")


def request_body(request: GenerationRequest, progress: Progress, *, model: str | None, runs_dry: bool,
                 placement: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The path and JSON body for the request's next attempt, as llama-server and vLLM read it.

    `placement` holds `cache_prompt` and `id_slot` as the engine decides them; what was
    already shown (`progress`) is taken off `max_tokens` and `min_tokens`, and a transcript
    continues after it.
    """
    s = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max(1, s.max_tokens - progress.pieces),
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty,  # llama.cpp's name
        "repetition_penalty": s.repeat_penalty,  # vLLM's name
    }
    if s.seed is not None:
        body["seed"] = s.seed
    if s.stop:
        body["stop"] = list(s.stop)
    if request.grammar:
        body["grammar"] = request.grammar
    if s.dry_multiplier > 0 and runs_dry:
        body.update(dry_multiplier=s.dry_multiplier, dry_base=s.dry_base,
                    dry_allowed_length=s.dry_allowed_length, dry_penalty_last_n=s.dry_penalty_last_n)
    if s.min_tokens > 0:
        body["min_tokens"] = max(0, s.min_tokens - progress.pieces)
    body.update(placement)
    if request.messages is not None:
        body["messages"] = [dict(m) for m in request.messages]
        return "/v1/chat/completions", body
    body["prompt"] = request.prompt + progress.raw  # after a cut, continue where it stopped
    return "/v1/completions", body


def take_usage(stats: GenerationStats, progress: Progress) -> bool:
    """Generated tokens, decode speed and reused prompt tokens from the server's `usage` or
    `timings`; whether it said how much of the prompt it reused."""
    usage = progress.usage or {}
    timings = progress.timings or {}
    if isinstance(usage.get("completion_tokens"), int):
        stats.generated_tokens = int(usage["completion_tokens"])
    elif isinstance(timings.get("predicted_n"), int):
        stats.generated_tokens = int(timings["predicted_n"])
    if isinstance(timings.get("predicted_per_second"), (int, float)) and timings["predicted_per_second"] > 0:
        stats.decode_tps = float(timings["predicted_per_second"])
    cached = timings.get("cache_n")
    if not isinstance(cached, int):
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    if isinstance(cached, int):
        stats.reused_tokens = int(cached)
        return True
    return False


def take_prompt_size(stats: GenerationStats, progress: Progress) -> bool:
    """The prompt's tokens as the server counted them; False when it did not say."""
    usage = progress.usage or {}
    timings = progress.timings or {}
    if isinstance(usage.get("prompt_tokens"), int):
        stats.prompt_tokens = int(usage["prompt_tokens"])
    elif isinstance(timings.get("prompt_n"), int):
        stats.prompt_tokens = int(timings["prompt_n"]) + stats.reused_tokens
    else:
        return False
    return True


def take_prefill(stats: GenerationStats, progress: Progress) -> None:
    """Prompt tokens evaluated: as the server timed them, else what was not reused."""
    timings = progress.timings or {}
    if isinstance(timings.get("prompt_n"), int):
        stats.prefill_tokens = int(timings["prompt_n"])
    else:
        stats.prefill_tokens = max(0, stats.prompt_tokens - stats.reused_tokens)


def refused(exc: Exception) -> str:
    text = str(exc).lower()
    if "refused" in text or "all connection attempts failed" in text:
        return "connection refused; is the server running?"
    return one_line(f"cannot connect: {exc}") if str(exc) else "cannot connect"


def is_context_error(message: str) -> bool:
    text = message.lower()
    return "context" in text and any(word in text for word in ("exceed", "too long", "maximum", "overflow"))


def local_tps(progress: Progress, generated: int) -> float:
    if progress.first_piece_at is None or progress.last_piece_at is None or generated < 2:
        return 0.0
    span = progress.last_piece_at - progress.first_piece_at
    return (generated - 1) / span if span > 0 else 0.0
