"""A client that goes away mid-stream: the backend call is cancelled and nothing is cached."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from backends.embedding import Embedder
from tests.stack import Stack, wait_until


def test_client_disconnect_cancels_backend_and_caches_nothing(
    embedder: Embedder, tmp_path: Path
) -> None:
    def slow(cfg: dict[str, object]) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"}

    with Stack(embedder, configure=slow) as s:
        s.set_faults("small", trickle_s=0.5, latency_scale=0.0)  # ~13 s for a whole answer
        body = (
            b'{"model": "small", "stream": true, '
            b'"messages": [{"role": "user", "content": "Tell me about the sea."}]}'
        )
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(request)
            first = sock.recv(4096)
            assert b"200 OK" in first
        # The socket is closed after the first chunk: cachegate must stop the backend call.

        def backend_idle() -> bool:
            state = httpx.get(s.sim_url("small") + "/sim/requests").json()
            return bool(state["in_flight"] == 0)

        assert wait_until(backend_idle, timeout=3)
        s.flush_writes()
        again = httpx.post(
            s.url + "/v1/chat/completions",
            json={
                "model": "small",
                "messages": [{"role": "user", "content": "Tell me about the sea."}],
            },
            timeout=20,
        )
        assert again.headers["x-cachegate-cache"] == "miss"
