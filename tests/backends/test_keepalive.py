"""Pooled backend connections and the server's keep-alive timeout.

uvicorn (so vLLM and SGLang) closes an idle connection after 5 s; aiohttp keeps one
pooled for 15 s by default. A request written on a connection whose FIN is still in
flight fails with ServerDisconnectedError. The race is made deterministic here by
blocking the client's event loop past the server's timeout: the FIN waits unread, as it
does on a network for the round-trip time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from backends.errors import UpstreamUnavailable
from backends.transport import BackendRequest, HttpTransport
from bench.procs import free_port
from proxy.settings import BackendSettings

ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
    }
).encode()

SERVER_KEEPALIVE_S = 1


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=port,
        timeout_keep_alive=SERVER_KEEPALIVE_S,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


async def _second_request_after_idle(transport: HttpTransport) -> None:
    request = BackendRequest("/chat/completions", {"model": "m", "messages": []})
    try:
        assert (await transport.send(request)).status == 200
        # Blocking on purpose: the server's FIN stays unread while the loop sleeps.
        time.sleep(SERVER_KEEPALIVE_S + 0.5)  # noqa: ASYNC251
        reply = await transport.send(request)
        assert reply.json is not None and reply.json["choices"][0]["message"]["content"] == "hi"
    finally:
        await transport.aclose()


def test_idle_connection_is_not_reused_past_keepalive(server_url: str) -> None:
    transport = HttpTransport("b", server_url, keepalive_s=SERVER_KEEPALIVE_S / 2)
    asyncio.run(_second_request_after_idle(transport))


def test_pool_longer_than_server_keepalive_hits_the_race(server_url: str) -> None:
    # The failure the setting prevents (aiohttp's default pooling is 15 s).
    transport = HttpTransport("b", server_url, keepalive_s=15.0)
    with pytest.raises(UpstreamUnavailable, match="ServerDisconnected"):
        asyncio.run(_second_request_after_idle(transport))


def test_keepalive_setting_is_validated_and_defaults_below_uvicorns() -> None:
    base = {"name": "b", "tier": "small", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    assert BackendSettings.model_validate(base).keepalive_s < 5.0
    with pytest.raises(ValueError, match="keepalive_s"):
        BackendSettings.model_validate({**base, "keepalive_s": 0})
    with pytest.raises(ValueError, match="keepalive_s"):
        HttpTransport("b", "http://127.0.0.1:1/v1", keepalive_s=0)
