"""SSE lines end only at CR, LF and CRLF: characters that other line splitters break at
(U+2028, U+2029, U+0085, form feed, vertical tab, the file/group/record separators) are
text inside a `data:` line, which a real loopback server streams raw here."""

from __future__ import annotations

import json

from servers import FaultHandler, FaultServer, completion_chunk

from townhall.engine.base import GenerationRequest, SamplingParams
from townhall.engine.openai import OpenAIEngine
from townhall.engine.sse import aiter_sse_lines

ODD_BREAKS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def _lines(*parts: bytes) -> list[str]:
    return [line async for line in aiter_sse_lines(_chunks(*parts))]


async def test_lines_split_only_at_cr_lf_and_crlf() -> None:
    body = f"a{ODD_BREAKS}b\r\nc\rd\ne\n".encode()
    assert await _lines(body) == [f"a{ODD_BREAKS}b", "c", "d", "e"]


async def test_crlf_and_utf8_split_across_chunks() -> None:
    # "é" is two bytes and U+2028 three: cut inside both, and between CR and LF.
    assert await _lines(b"x\r", b"\ny\xc3", b"\xa9\xe2\x80", b"\xa8z\r") == ["x", "y\u00e9\u2028z"]
    assert await _lines(b"one\r", b"two\n\n") == ["one", "two", ""]
    assert await _lines(b"unterminated") == ["unterminated"]


async def test_raw_unicode_line_breaks_inside_json_arrive_whole() -> None:
    pieces = ["Line\u2028sep", " para\u2029sep", " next\u0085line", " feed\x0cform", " tab\x0bv"]

    def raw_stream(handler: FaultHandler, body: dict) -> None:
        handler.start_stream()
        for piece in pieces:
            # ensure_ascii=False writes U+2028, U+2029 and U+0085 as raw UTF-8, as
            # llama-server does; JSON escapes the C0 controls (form feed, tab) itself.
            handler.chunk(f"data: {json.dumps(completion_chunk(piece), ensure_ascii=False)}\n\n".encode())
        handler.chunk(b"data: " + json.dumps(completion_chunk("", "stop"), ensure_ascii=False).encode() + b"\r\n\r\n")
        handler.event("[DONE]")
        handler.end_stream()

    with FaultServer(raw_stream) as server:
        engine = OpenAIEngine(server.root, backoff_s=0.02, read_timeout_s=5.0)
        await engine.start()
        try:
            gen = engine.generate(GenerationRequest("ada", "Ada:", SamplingParams(max_tokens=50)))
            text = await gen.result()
        finally:
            await engine.aclose()
    assert text == "".join(pieces)
    assert gen.stats is not None and gen.stats.finish_reason == "stop"
    assert len(server.requests) == 1  # no retry: nothing looked malformed
