"""What crosses the proxy: client headers never reach backends, upstream credentials
never reach clients, backends come only from the configuration."""

from __future__ import annotations

from pathlib import Path

import httpx

from backends.embedding import Embedder
from tests.hardening.conftest import KEY_A, Cfg, start

UPSTREAM = "sk-upstream-credential-42"
QUESTIONS = {False: "Name three prime numbers.", True: "Who wrote the Odyssey?"}


def _upstream_key(cfg: Cfg) -> None:
    for b in cfg["backends"]:
        b["api_key_env"] = "H_UPSTREAM"


def test_headers_and_credentials(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "b.db", _upstream_key, env={"H_UPSTREAM": UPSTREAM})
    try:
        headers = {
            "Authorization": f"Bearer {KEY_A}",
            "x-evil": "1",
            "x-forwarded-host": "attacker.example",
            "cookie": "session=stolen",
        }
        sent = []
        for stream in (False, True):
            body = {
                "model": "auto",
                "stream": stream,
                "messages": [{"role": "user", "content": QUESTIONS[stream]}],
                # A client cannot choose where the request goes.
                "base_url": "http://127.0.0.1:1/v1",
                "api_base": "http://127.0.0.1:1/v1",
            }
            r = httpx.post(
                stack.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
            )
            assert r.status_code == 200, r.text
            sent.append(r)
        received = stack.received("small")
        assert len(received) == 2
        for req in received:
            got = {k.lower(): v for k, v in req["headers"].items()}
            assert "x-evil" not in got and "cookie" not in got
            assert "x-forwarded-host" not in got
            assert got["authorization"] == f"Bearer {UPSTREAM}"  # the backend's own key only
            assert KEY_A not in str(req)
        for r in sent:
            assert UPSTREAM not in r.text
            assert all(UPSTREAM not in v for v in r.headers.values())
        models = httpx.get(stack.url + "/v1/models", headers=headers, timeout=10)
        assert UPSTREAM not in models.text
    finally:
        stack.stop()
