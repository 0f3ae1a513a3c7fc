"""Usage limits per API key: a request passes its key's limits and its tenant's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from backends.embedding import Embedder
from proxy.errors import InvalidRequest
from proxy.limits import Limiter, LimitExceeded
from proxy.limits_store import OpsStore
from proxy.services import Services
from proxy.settings import LimitSettings, TenantLimitSettings
from tests.hardening.conftest import KEY_A, KEY_B, Cfg, admin, chat, start
from tests.hardening.test_limits import Clock
from tests.stack import Stack, wait_until

K1, K2 = "cfg:K1", "key_0123456789abcdef"


async def replicas(tmp_path: Path, settings: LimitSettings, clock: Clock) -> list[Limiter]:
    out = []
    for _ in range(2):
        store = OpsStore(f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}")
        await store.prepare()
        out.append(Limiter(settings, store, CollectorRegistry(), clock=clock))
    return out


async def close(limiters: list[Limiter]) -> None:
    for r in limiters:
        assert r.store is not None
        await r.store.close()


def refused(limiter: Limiter, tenant: str, key: str | None) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as exc:
        limiter.admit(tenant, 5, key=key)
    return exc.value


async def test_two_keys_of_one_tenant_have_their_own_limits(tmp_path: Path) -> None:
    settings = LimitSettings(
        requests_per_minute=10,
        key_defaults=TenantLimitSettings(requests_per_minute=5),
        keys={K1: TenantLimitSettings(requests_per_minute=2)},
    )
    limiters = await replicas(tmp_path, settings, Clock())
    one = limiters[0]
    try:
        for _ in range(2):
            one.admit("t", 5, key=K1)
        hit = refused(one, "t", K1)
        assert (hit.scope, hit.limit) == ("key", "requests_per_minute")
        assert "key 'cfg:K1' (tenant 't')" in hit.message
        for _ in range(5):  # the other key has the default five, the tenant room for them
            one.admit("t", 5, key=K2)
        assert refused(one, "t", K2).scope == "key"
        assert one.usage("tenant", "t").requests == 7
        assert one.usage("key", K1).requests == 2 and one.usage("key", K2).requests == 5
        one.admit("t", 5)  # no key (open mode): only the tenant's limits apply
    finally:
        await close(limiters)


async def test_key_over_while_tenant_has_room_and_the_reverse(tmp_path: Path) -> None:
    settings = LimitSettings(
        tenants={"small": TenantLimitSettings(requests_per_minute=3)},
        keys={K1: TenantLimitSettings(tokens_per_minute=100)},
    )
    limiters = await replicas(tmp_path, settings, Clock())
    one = limiters[0]
    try:
        one.admit("big", 90, key=K1)
        with pytest.raises(LimitExceeded) as key_hit:
            one.admit("big", 20, key=K1)  # the key's 100 tokens; tenant 'big' is unlimited
        assert (key_hit.value.scope, key_hit.value.limit) == ("key", "tokens_per_minute")
        for _ in range(3):
            one.admit("small", 1, key=K2)
        tenant_hit = refused(one, "small", K2)  # K2 has no limits of its own
        assert (tenant_hit.scope, tenant_hit.limit) == ("tenant", "requests_per_minute")
        assert one.usage("key", K2).requests == 3  # a refused request counts in neither
        assert one.usage("tenant", "big").tokens == 90
    finally:
        await close(limiters)


async def test_two_replicas_share_key_counters_and_overrides(tmp_path: Path) -> None:
    clock = Clock()
    one, two = limiters = await replicas(
        tmp_path, LimitSettings(keys={K1: TenantLimitSettings(requests_per_minute=4)}), clock
    )
    try:
        for _ in range(3):
            one.admit("t", 5, key=K1)
        one.charge("t", 50, 0.25, key=K1)
        await one.sync()
        await two.sync()
        assert two.usage("key", K1) == one.usage("key", K1)
        assert two.usage("key", K1).cost == 0.25 and two.usage("tenant", "t").cost == 0.25
        two.admit("t", 5, key=K1)
        assert refused(two, "t", K1).scope == "key"  # 3 from the other replica + 1 here
        await two.sync()
        await one.sync()
        assert refused(one, "t", K1).scope == "key"
        assert one.store is not None
        await one.store.put_override(("key", K1), {"requests_per_minute": 100}, clock(), "test")
        await two.sync()  # an admin override on one replica reaches the other with a sync
        two.admit("t", 5, key=K1)
        assert two.effective("key", K1).requests_per_minute == 100
    finally:
        await close(limiters)


async def test_key_input_bounds(tmp_path: Path) -> None:
    settings = LimitSettings(
        keys={K1: TenantLimitSettings(max_tokens_ceiling=100, max_messages=2)},
        tenants={"t": TenantLimitSettings(max_total_chars=200)},
    )
    limiters = await replicas(tmp_path, settings, Clock())
    one = limiters[0]
    msgs = [{"role": "user", "content": "hi"}]
    try:
        with pytest.raises(InvalidRequest) as ceiling:
            one.admit_request("t", K1, {"messages": msgs, "max_tokens": 101})
        assert (ceiling.value.param, ceiling.value.code) == ("max_tokens", "max_tokens_too_large")
        assert "key 'cfg:K1'" in ceiling.value.message
        with pytest.raises(InvalidRequest) as many:
            one.admit_request("t", K1, {"messages": msgs * 3})
        assert many.value.param == "messages"
        one.admit_request("t", K2, {"messages": msgs * 3, "max_tokens": 101})  # not K1's bounds
        with pytest.raises(InvalidRequest) as long:
            one.admit_request("t", K2, {"messages": [{"role": "user", "content": "x" * 300}]})
        assert "tenant 't'" in long.value.message  # the tenant's bound applies to every key
        assert one.usage("tenant", "t").requests == 1  # a refused request is not counted
    finally:
        await close(limiters)


def _keys(cfg: Cfg) -> None:
    cfg["limits"] = {
        "requests_per_minute": 100,
        "keys": {"cfg:H_KEY_A": {"requests_per_minute": 2}},
    }


@pytest.fixture
def stack(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    s = start(embedder, tmp_path / "k.db", _keys)
    try:
        yield s
    finally:
        s.stop()


async def _render(s: Services) -> str:
    return s.metrics.render().decode()


def test_key_limits_over_http_and_admin(stack: Stack) -> None:
    for i in range(2):
        assert chat(stack, f"question number {i}").status_code == 200
    over = chat(stack, "one too many")
    assert over.status_code == 429 and over.headers["x-cachegate-limit"] == (
        "key.requests_per_minute"
    )
    error: dict[str, Any] = over.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "key 'cfg:H_KEY_A'" in error["message"]
    assert chat(stack, "tenant b's key has room", key=KEY_B).status_code == 200
    metrics = stack.call(_render)
    assert (
        'cachegate_key_limit_rejections_total{key="cfg:H_KEY_A",limit="requests_per_minute",'
        'tenant="a"} 1.0' in metrics
    )
    assert KEY_A not in metrics
    with admin(stack) as adm:
        listed = {k["key_id"]: k for k in adm.get("/limits/keys").json()["data"]}
        assert set(listed) == {"cfg:H_KEY_A", "cfg:H_KEY_B"}
        assert listed["cfg:H_KEY_A"]["tenant"] == "a"
        assert listed["cfg:H_KEY_A"]["usage"]["requests"] >= 2
        put = adm.put("/limits/keys/cfg:H_KEY_B", json={"max_tokens_ceiling": 50})
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "admin"
        capped = chat(stack, "a long answer please", key=KEY_B, max_tokens=60)
        assert capped.status_code == 400 and capped.json()["error"]["param"] == "max_tokens"
        assert chat(stack, "short", key=KEY_B, max_tokens=50).status_code == 200
        patched = adm.patch("/limits/keys/cfg:H_KEY_A", json={"requests_per_minute": 1000})
        assert patched.json()["effective"]["requests_per_minute"] == 1000
        assert chat(stack, "allowed again").status_code == 200
        assert adm.put("/limits/keys/cfg:NOPE", json={}).status_code == 404
        assert adm.put("/limits/keys/cfg:H_KEY_A", json={"max_messages": 0}).status_code == 422
        assert adm.delete("/limits/keys/cfg:H_KEY_A").json()["source"] == "configured"
        assert adm.delete("/limits/keys/cfg:H_KEY_A").status_code == 404
        audit = [r for r in adm.get("/audit").json()["data"] if r["kind"] == "limit"]
        assert [(r["action"], r["target"]) for r in audit] == [
            ("delete", "key:cfg:H_KEY_A"),
            ("patch", "key:cfg:H_KEY_A"),
            ("replace", "key:cfg:H_KEY_B"),
        ]


def test_configured_key_revoked_on_every_replica(embedder: Embedder, tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    first, second = start(embedder, db), start(embedder, db)
    try:
        assert chat(second, "before", key=KEY_B).status_code == 200
        with admin(first) as adm:
            revoked = adm.delete("/keys/cfg:H_KEY_B")
            assert revoked.status_code == 200 and revoked.json()["revoked"] is True
            assert adm.delete("/keys/cfg:H_KEY_B").status_code == 404
        assert chat(first, "at once here", key=KEY_B).status_code == 401
        started = time.monotonic()
        assert wait_until(lambda: chat(second, "there", key=KEY_B).status_code == 401, 1.0)
        assert time.monotonic() - started < 1.0
        assert chat(second, "other keys still work", key=KEY_A).status_code == 200
    finally:
        first.stop()
        second.stop()
    again = start(embedder, db)  # the revocation is stored, not only held in memory
    try:
        assert chat(again, "after a restart", key=KEY_B).status_code == 401
    finally:
        again.stop()
