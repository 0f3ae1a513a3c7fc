from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backends import OnnxEmbedder
from cache import CacheScope, CategoryPolicy, NewEntry, SemanticCache
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures)

SCOPE = CacheScope(tenant="acme", model_alias="chat", fingerprint="fp0")


class Clock:
    """A settable clock for TTLs."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass(frozen=True)
class Verdict:
    score: float
    equivalent: bool


class NumbersMustMatch:
    """A tiny checker through the public Checker protocol: equal digits and cosine >= 0.8."""

    def check(self, query_text: str, query_vec: Any, cand_text: str, cand_vec: Any,
              threshold: float | None = None) -> Verdict:  # fmt: skip
        cos = float(np.dot(query_vec, cand_vec))
        same = re.findall(r"\d+", query_text) == re.findall(r"\d+", cand_text)
        return Verdict(score=cos, equivalent=same and cos >= (threshold or 0.8))


def response(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "small",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"


Embed = Callable[[str], np.ndarray]


@pytest.fixture
def embed(embedder: OnnxEmbedder) -> Embed:
    def one(text: str) -> np.ndarray:
        return embedder.embed_batch([text])[0]

    return one


def entry(text: str, vec: np.ndarray, *, scope: CacheScope = SCOPE, category: str = "factual",
          answer: str = "42", tier: str = "large") -> NewEntry:  # fmt: skip
    return NewEntry(scope=scope, category=category, text=text, vector=vec,
                    response=response(answer), backend="sim-large", tier=tier,  # type: ignore[arg-type]
                    prompt_tokens=5, completion_tokens=2)  # fmt: skip


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
async def cache(sqlite_url: str, clock: Clock) -> AsyncIterator[SemanticCache]:
    c = await SemanticCache.open(sqlite_url, clock=clock, sweep_interval_s=3600)
    try:
        yield c
    finally:
        await c.close()


POLICY = CategoryPolicy(similarity_threshold=0.85, ttl_seconds=3600)
