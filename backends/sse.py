"""Server-sent events: incremental parsing of an OpenAI-style stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

DONE = "[DONE]"


class SSEParser:
    """Feeds raw bytes, yields the ``data`` payload of each complete event.

    OpenAI-compatible servers send ``data: <json>\\n\\n`` events; comments
    (``: ping``) and other fields are ignored, multi-line data is joined.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            nl = self._buffer.find(b"\n")
            if nl < 0:
                break
            line = self._buffer[:nl].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buffer = self._buffer[nl + 1 :]
            if line == "":
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
        return events

    def close(self) -> list[str]:
        """Events still pending when the stream ends without a blank line."""
        rest = self.feed(b"\n\n") if self._buffer or self._data else []
        return rest


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event


def encode_event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()
