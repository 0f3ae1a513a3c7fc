"""Helpers for the hardening tests: a live cachegate on a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from backends.embedding import Embedder
from tests.stack import Stack

Cfg = dict[str, Any]
ADMIN_KEY = "adm-hardening-secret"
KEY_A = "sk-tenant-a-secret-1234"
KEY_B = "sk-tenant-b-secret-5678"
ENV = {"H_ADMIN_KEY": ADMIN_KEY, "H_KEY_A": KEY_A, "H_KEY_B": KEY_B}


def configure(db: Path | str, tweak: Callable[[Cfg], None] | None = None) -> Callable[[Cfg], None]:
    url = db if isinstance(db, str) else f"sqlite+aiosqlite:///{db}"

    def apply(cfg: Cfg) -> None:
        cfg["storage"] = {"url": url}
        cfg["auth"] = {
            "require_keys": True,
            "admin_key_env": "H_ADMIN_KEY",
            "keys": [
                {"key_env": "H_KEY_A", "tenant": "a"},
                {"key_env": "H_KEY_B", "tenant": "b"},
            ],
        }
        cfg["router"] = {"enabled": False}
        cfg["cache"] = {"equivalence_check": False}
        cfg["circuit"] = {"failure_threshold": 1000, "cooldown_s": 1}
        if tweak is not None:
            tweak(cfg)

    return apply


def start(
    embedder: Embedder,
    db: Path | str,
    tweak: Callable[[Cfg], None] | None = None,
    env: dict[str, str] | None = None,
) -> Stack:
    return Stack(embedder, configure=configure(db, tweak), env={**ENV, **(env or {})}).start()


def oai(stack: Stack, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


def admin(stack: Stack) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.Client(base_url=stack.url + "/admin", headers=headers, timeout=30)


def chat(stack: Stack, text: str, key: str = KEY_A, **extra: Any) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(stack.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
