"""Server-sent events, parsed from an HTTP body's lines.

OpenAI-compatible servers stream `data: {json}` events ended by a blank line and
finish with `data: [DONE]`; llama-cpp-python also sends `: ping` comments while the
prompt is evaluated. Only complete events are yielded: an event cut off by a closed
connection is dropped (as the SSE spec says), so a cut stream shows up as a stream
that ended without `[DONE]` rather than as half a JSON object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

DONE = "[DONE]"


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = "message"


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
