"""A live cachegate with the admin API on a real SQLite file, and HTTP helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backends.embedding import Embedder
from tests.stack import Stack

Cfg = dict[str, Any]
ADMIN_KEY = "adm-test-secret"
CLIENT_KEY = "sk-client-a"
ENV = {"TEST_ADMIN_KEY": ADMIN_KEY, "KEY_A": CLIENT_KEY}


def admin_config(url: str, tweak: Callable[[Cfg], None] | None = None) -> Callable[[Cfg], None]:
    def configure(cfg: Cfg) -> None:
        cfg["storage"] = {"url": url}
        cfg["auth"] = {
            "require_keys": True,
            "admin_key_env": "TEST_ADMIN_KEY",
            "keys": [{"key_env": "KEY_A", "tenant": "a"}],
        }
        # No bundled router artifact or equivalence model is needed for these tests.
        cfg["router"] = {"enabled": False}
        cfg["cache"] = {"equivalence_check": False}
        if tweak is not None:
            tweak(cfg)

    return configure


def start(embedder: Embedder, url: str, tweak: Callable[[Cfg], None] | None = None) -> Stack:
    return Stack(embedder, configure=admin_config(url, tweak), env=dict(ENV)).start()


@pytest.fixture
def stack(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    s = start(embedder, f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}")
    try:
        yield s
    finally:
        s.stop()


def admin(stack: Stack, *, actor: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    if actor:
        headers["x-cachegate-actor"] = actor
    return httpx.Client(base_url=stack.url + "/admin", headers=headers, timeout=30)


def oai(stack: Stack, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


def ask(c: openai.OpenAI, text: str) -> Any:
    return c.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}]
    )


def error_of(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


# The session PostgreSQL for the two-replica test.
from tests.pg import pg_server  # noqa: E402, F401
