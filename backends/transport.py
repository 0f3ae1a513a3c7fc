"""The seam between cachegate and a model server: one async method, ``send``.

:class:`HttpTransport` speaks OpenAI-compatible HTTP with aiohttp; tests and
benchmarks may hand in any object with the same ``send`` (a function wrapped
in :class:`FunctionTransport`, or a real loopback server behind HTTP).
aiohttp's errors are translated here and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from backends.errors import (
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from backends.jsontext import SURROGATE_ESCAPE, loads_strict, repair, repair_text
from backends.sse import iter_events


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 5.0
    read_s: float | None = None
    total_s: float = 60.0


@dataclass(frozen=True)
class BackendRequest:
    path: str  # "/chat/completions", "/completions", "/embeddings"
    body: Mapping[str, Any]
    stream: bool = False


async def _noop() -> None:
    return None


@dataclass
class BackendReply:
    """A JSON answer (``json``) or an open stream of SSE data payloads (``events``)."""

    backend: str
    status: int
    json: dict[str, Any] | None = None
    events: AsyncIterator[str] | None = None
    close: Callable[[], Awaitable[None]] = field(default=_noop)


class Transport(Protocol):
    async def send(self, request: BackendRequest) -> BackendReply: ...


class FunctionTransport:
    """Wraps an ``async def handler(request) -> BackendReply`` as a transport."""

    def __init__(self, handler: Callable[[BackendRequest], Awaitable[BackendReply]]) -> None:
        self._handler = handler

    async def send(self, request: BackendRequest) -> BackendReply:
        return await self._handler(request)

    async def aclose(self) -> None:
        return None


class HttpTransport:
    """OpenAI-compatible HTTP on one pooled aiohttp session."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 256,
        keepalive_s: float = 4.0,
    ) -> None:
        if keepalive_s <= 0:
            raise ValueError(f"keepalive_s must be > 0, got {keepalive_s}")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeouts = timeouts or Timeouts()
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop (aiohttp binds sessions to it).
        if self._session is None or self._session.closed:
            t = self._timeouts
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=t.total_s, sock_connect=t.connect_s, sock_read=t.read_s
                ),
                # An idle pooled connection is dropped before the server's own keep-alive
                # timeout ends it (uvicorn's, hence vLLM's and SGLang's: 5 s; aiohttp's
                # default 15 s is longer): a request written on a socket whose FIN is
                # still in flight fails with ServerDisconnectedError, costs a retry and
                # counts against the backend's circuit.
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=self._keepalive_s
                ),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, request: BackendRequest) -> BackendReply:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if request.stream:
            headers["Accept"] = "text/event-stream"
        url = self.base_url + request.path
        try:
            resp = await self._get_session().post(
                url, data=json.dumps(request.body), headers=headers
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name}: timed out connecting", backend=self.name) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"{self.name}: cannot reach backend ({type(exc).__name__})", backend=self.name
            ) from exc
        if resp.status >= 400:
            body = await self._read_body(resp)
            resp.release()
            raise UpstreamStatusError(
                f"{self.name}: backend answered HTTP {resp.status}: {_summary(body)}",
                backend=self.name,
                status=resp.status,
                body=body,
            )
        if request.stream:
            return BackendReply(
                backend=self.name,
                status=resp.status,
                events=iter_events(self._chunks(resp)),
                close=_closer(resp),
            )
        raw = await self._read_body(resp)
        resp.release()
        try:
            parsed = loads_strict(raw)
        except (ValueError, RecursionError) as exc:
            raise UpstreamStatusError(
                f"{self.name}: backend sent invalid JSON", backend=self.name, status=502, body=raw
            ) from exc
        if not isinstance(parsed, dict):
            raise UpstreamStatusError(
                f"{self.name}: backend sent a non-object JSON body",
                backend=self.name,
                status=502,
                body=raw,
            )
        if SURROGATE_ESCAPE.search(raw):
            parsed = repair(parsed)
        return BackendReply(backend=self.name, status=resp.status, json=parsed)

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name}: timed out reading", backend=self.name) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"{self.name}: connection lost reading the answer", backend=self.name
            ) from exc

    async def _chunks(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamStreamError(f"{self.name}: stream timed out", backend=self.name) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamStreamError(
                f"{self.name}: stream broke ({type(exc).__name__})", backend=self.name
            ) from exc
        finally:
            resp.release()


def _closer(resp: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        resp.close()
        await asyncio.sleep(0)

    return close


def _summary(body: bytes) -> str:
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return repair_text(str(parsed["error"].get("message", ""))[:300])
    except (ValueError, RecursionError):
        pass
    return body[:300].decode("utf-8", errors="replace")
