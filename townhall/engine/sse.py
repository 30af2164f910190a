"""Server-sent events, parsed from an HTTP body's lines.

OpenAI-compatible servers stream `data: {json}` events ended by a blank line and
finish with `data: [DONE]`; llama-cpp-python also sends `: ping` comments while the
prompt is evaluated. Only complete events are yielded: an event cut off by a closed
connection is dropped (as the SSE spec says), so a cut stream shows up as a stream
that ended without `[DONE]` rather than as half a JSON object.

Lines end only at CR, LF or CRLF, as the SSE spec says. httpx's `aiter_lines()` also
splits at U+2028, U+2029, U+0085, form feed and the other Unicode line breaks, which
JSON allows raw inside a string: a server writing raw UTF-8 (llama-server does) would
have such a character cut its `data:` line in two. So the body's bytes are split here.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

DONE = "[DONE]"
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = "message"


async def aiter_sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Decode a UTF-8 body and yield its lines without their CR, LF or CRLF endings."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buffer = ""
    async for chunk in chunks:
        buffer += decoder.decode(chunk)
        start = 0
        for end in _LINE_END.finditer(buffer):
            if end.group() == "\r" and end.end() == len(buffer):
                break  # maybe the first half of a CRLF split across chunks
            yield buffer[start : end.start()]
            start = end.end()
        buffer = buffer[start:]
    buffer += decoder.decode(b"", final=True)
    for line in _LINE_END.split(buffer.removesuffix("\r")) if buffer else ():
        yield line


async def aiter_events(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Group lines (without their line endings) into events; comments and ids are skipped."""
    data: list[str] = []
    event = "message"
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SSEEvent(data="\n".join(data), event=event)
            data, event = [], "message"
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
