"""The overload benchmark's time scaling and headroom count (no processes, no data)."""

from __future__ import annotations

import pytest

from bench.adaptive import Timeline, headroom, scaled_policies
from bench.workload import Request, Workload
from proxy.wiring import DAY, DEFAULT_POLICIES


def _req(i: int, at: float, category: str, intent: str) -> Request:
    return Request(i, at, category, intent, f"text {intent}", 10, 10, 10)


def test_ttls_are_compressed_like_time() -> None:
    t = Timeline(wall_s=100, surge_at=40, surge_s=30, day_s=20)
    assert t.ttl("general") == pytest.approx(DEFAULT_POLICIES["general"]["ttl_seconds"] * 20 / DAY)
    assert t.ttl("time_sensitive") == pytest.approx(300 * 20 / DAY)
    assert scaled_policies(t)["factual"] == {"ttl_seconds": pytest.approx(7 * 20)}


def test_headroom_separates_first_asks_expired_and_stretchable() -> None:
    t = Timeline(wall_s=100, surge_at=40, surge_s=30, day_s=10)  # general TTL 10 s, ×2
    reqs = (
        _req(0, 1, "general", "a"),  # answered at 1
        _req(1, 2, "general", "b"),  # answered at 2
        _req(2, 5, "time_sensitive", "w"),  # no stretch
        _req(3, 41, "general", "a"),  # 40 s old: expired beyond 2 × TTL
        _req(4, 42, "general", "c"),  # first ask
        _req(5, 45, "general", "a"),  # answered at 41: fresh, a hit
        _req(6, 56, "general", "a"),  # 15 s old: expired, within 2 × TTL
        _req(7, 60, "time_sensitive", "w"),  # expired, never stretches
        _req(8, 80, "general", "b"),  # after the surge: not counted
    )
    room = headroom(Workload(reqs, "test", "t", 1.0, 0), t)
    assert (room.requests, room.first_asks, room.expired, room.stretchable) == (5, 1, 3, 1)
