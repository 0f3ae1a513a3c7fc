"""Usage limits: 429 in OpenAI's shape with Retry-After, shared across replicas, admin API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai
import pytest
from prometheus_client import CollectorRegistry

from backends.embedding import Embedder
from proxy.errors import RateLimited
from proxy.limits import Limiter, estimate_prompt_tokens
from proxy.limits_store import OpsStore
from proxy.services import Services
from proxy.settings import LimitSettings, TenantLimitSettings
from tests.hardening.conftest import KEY_A, KEY_B, Cfg, admin, chat, oai, start
from tests.stack import free_port


class Clock:
    def __init__(self, now: float = 1_000_020.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def replicas(tmp_path: Path, settings: LimitSettings, clock: Clock) -> list[Limiter]:
    out = []
    for _ in range(2):
        store = OpsStore(f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}")
        await store.prepare()
        out.append(Limiter(settings, store, CollectorRegistry(), clock=clock))
    return out


async def test_two_replicas_share_request_counts(tmp_path: Path) -> None:
    clock = Clock()
    one, two = await replicas(tmp_path, LimitSettings(requests_per_minute=10), clock)
    try:
        for _ in range(6):
            one.admit("t", 5)
        await one.sync()
        await two.sync()
        for _ in range(4):
            two.admit("t", 5)
        with pytest.raises(RateLimited) as refused:
            two.admit("t", 5)
        assert refused.value.limit == "requests_per_minute"
        assert refused.value.retry_after == 66  # next minute, then a tenth of it must fade
        await two.sync()
        await one.sync()
        with pytest.raises(RateLimited):
            one.admit("t", 5)  # the other replica's four are seen here after one sync
        one.admit("other", 5)  # tenants are counted apart
        clock.now += 90  # half-way through the next minute half of the last one counts
        for _ in range(5):
            one.admit("t", 5)
        with pytest.raises(RateLimited) as sliding:
            one.admit("t", 5)
        assert sliding.value.retry_after == 6  # 5 now + 10 x 0.4 leaves room for one
        clock.now += 120  # two minutes on: nothing of the past counts
        one.admit("t", 5)
        assert one.usage("tenant", "t").requests == 1
    finally:
        for r in (one, two):
            assert r.store is not None
            await r.store.close()


async def test_tokens_and_budget(tmp_path: Path) -> None:
    clock = Clock()
    settings = LimitSettings(
        tokens_per_minute=100,
        tenants={"rich": TenantLimitSettings(budget_dollars=0.01, tokens_per_minute=10_000)},
        budget_dollars=1.0,
    )
    (limiter, other) = await replicas(tmp_path, settings, clock)
    try:
        limiter.admit("t", 60)
        limiter.charge("t", 30, 0.0)
        with pytest.raises(RateLimited) as refused:
            limiter.admit("t", 20)  # 90 used + 20 > 100
        assert refused.value.limit == "tokens_per_minute"
        limiter.admit("rich", 20)
        limiter.charge("rich", 100, 0.011)
        await limiter.sync()
        await other.sync()
        with pytest.raises(RateLimited) as spent:
            other.admit("rich", 1)  # the budget is spent, seen from the other replica
        assert spent.value.limit == "budget_dollars"
        assert spent.value.retry_after > 60  # the budget period is a day
        assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "x" * 40}]}) == 10
    finally:
        for r in (limiter, other):
            assert r.store is not None
            await r.store.close()


async def test_store_down_enforces_locally(tmp_path: Path) -> None:
    clock = Clock()
    store = OpsStore(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere")
    limiter = Limiter(LimitSettings(requests_per_minute=2), store, CollectorRegistry(), clock=clock)
    try:
        limiter.admit("t", 1)
        await limiter.close()  # a failed sync keeps the deltas
        assert not limiter.store_ok
        limiter.admit("t", 1)
        with pytest.raises(RateLimited):
            limiter.admit("t", 1)
    finally:
        await store.close()


def _rpm(n: int) -> Callable[[Cfg], None]:
    def tweak(cfg: Cfg) -> None:
        cfg["limits"] = {
            "requests_per_minute": 100,
            "tenants": {"a": {"requests_per_minute": n}, "b": {"tokens_per_minute": 100_000}},
        }

    return tweak


def test_rate_limited_answer_shape_metrics_and_admin(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "l.db", _rpm(3))
    try:
        for i in range(3):
            assert chat(stack, f"question number {i}").status_code == 200
        refused = chat(stack, "one too many")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 120
        assert refused.json() == {
            "error": {
                "message": refused.json()["error"]["message"],
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        assert chat(stack, "tenant b is not limited", key=KEY_B).status_code == 200
        with oai(stack, KEY_A) as c, pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
        metrics = stack.call(_render)
        assert 'cachegate_limit_rejections_total{limit="requests_per_minute",tenant="a"} 2.0' in (
            metrics
        )
        with admin(stack) as adm:
            listed = adm.get("/limits").json()
            a = next(t for t in listed["data"] if t["tenant"] == "a")
            assert a["effective"]["requests_per_minute"] == 3 and a["usage"]["requests"] > 2.5
            put = adm.put("/limits/a", json={"requests_per_minute": 1000})
            assert put.status_code == 200, put.text
            assert put.json()["source"] == "admin"
            assert chat(stack, "allowed again").status_code == 200
            patched = adm.patch("/limits/a", json={"budget_dollars": 0}).json()
            assert patched["effective"] == {
                "requests_per_minute": 1000,
                "tokens_per_minute": None,
                "budget_dollars": 0.0,
                "max_messages": None,
                "max_total_chars": None,
                "max_tokens_ceiling": None,
            }
            assert chat(stack, "no budget").status_code == 429
            assert adm.put("/limits/a", json={"requests_per_minute": 0}).status_code == 422
            assert adm.delete("/limits/a").json()["source"] == "configured"
            assert adm.delete("/limits/a").status_code == 404
            audit = adm.get("/audit").json()["data"]
            assert [r["action"] for r in audit if r["kind"] == "limit"] == [
                "delete",
                "patch",
                "replace",
            ]
    finally:
        stack.stop()


async def _render(s: Services) -> str:
    return s.metrics.render().decode()
