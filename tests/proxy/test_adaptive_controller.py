"""The adaptive controller over a real backend pool forced into overload (injectable clock)."""

from __future__ import annotations

import asyncio

import pytest

from backends.backend import Backend, BackendSpec
from backends.pool import BackendPool
from backends.transport import BackendReply, BackendRequest, FunctionTransport
from cache import CategoryPolicy, PolicySet
from cache.adaptive import AdaptiveConfig
from proxy.adaptive import AdaptiveController
from proxy.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policies() -> PolicySet:
    return PolicySet(
        policies={
            "factual": CategoryPolicy(
                similarity_threshold=0.9, threshold_floor=0.8, ttl_seconds=60, ttl_max_factor=2
            ),
            "time_sensitive": CategoryPolicy(similarity_threshold=0.95, ttl_seconds=300),
        }
    )


async def test_overload_relaxes_bounded_categories_and_recovery_restores() -> None:
    clock = Clock()
    gate = asyncio.Event()

    async def held(request: BackendRequest) -> BackendReply:
        await gate.wait()
        return BackendReply(backend="large", status=200, json={"choices": []})

    large = Backend(
        BackendSpec(name="large", tier="large", model="m", max_concurrency=4),
        FunctionTransport(held),
        clock=clock,
    )
    pool = BackendPool([large])
    ctl = AdaptiveController(
        pool, policies, Metrics(), AdaptiveConfig(min_dwell_s=3, step=0.5), clock=clock
    )
    for _ in range(20):
        ctl.shares.record("factual", "large")
        ctl.shares.record("time_sensitive", "large")
    calls = [asyncio.create_task(large.call(BackendRequest("/x", {}))) for _ in range(4)]
    await asyncio.sleep(0)
    assert large.load.in_flight == 4  # at max_concurrency: pressure 1.0
    ctl.tick()
    assert ctl.levels()["large"] == "overloaded"
    ctl.tick()
    factual = ctl.effective("factual", policies()["factual"])
    assert factual.similarity_threshold == pytest.approx(0.8)
    assert factual.ttl_seconds == 60  # new entries keep the configured TTL
    assert factual.ttl_stretch == pytest.approx(2.0)  # stored ones may be served to 120 s
    fixed = policies()["time_sensitive"]
    assert ctl.effective("time_sensitive", fixed) == fixed
    assert ctl.log and "load on large" in ctl.log[-1].cause

    gate.set()
    await asyncio.gather(*calls)
    clock.now += 1
    ctl.tick()
    assert ctl.levels()["large"] == "overloaded"  # holds for min_dwell_s
    clock.now += 5
    for _ in range(3):
        ctl.tick()
    assert ctl.levels()["large"] == "normal"
    assert ctl.effective("factual", policies()["factual"]) == policies()["factual"]
