"""Stale-while-overloaded: a TTL stretch serves expired entries only within its bounds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cache import CategoryPolicy, PolicyError, SemanticCache
from tests.cache.conftest import SCOPE, Clock, entry, unit

FACTUAL = CategoryPolicy(similarity_threshold=0.9, ttl_seconds=100, ttl_max_factor=3.0)
FIXED = CategoryPolicy(similarity_threshold=0.9, ttl_seconds=100)  # no bounds: never stale


async def _stored(cache: SemanticCache) -> None:
    cache.submit(entry("capital of peru", unit(1), category="factual"), FACTUAL)
    cache.submit(entry("weather in lima", unit(2), category="time_sensitive"), FIXED)
    await cache.flush()


async def test_expired_entry_served_only_under_a_stretch_and_within_it(
    cache: SemanticCache, clock: Clock
) -> None:
    await _stored(cache)
    clock.advance(150)  # past the TTL, within 3 × TTL
    assert await cache.lookup(SCOPE, "capital of peru", unit(1), "factual", FACTUAL) is None
    half = replace(FACTUAL, ttl_stretch=2.0)  # what adaptation sets while a tier is loaded
    hit = await cache.lookup(SCOPE, "capital of peru", unit(1), "factual", half)
    assert hit is not None and hit.exact
    # semantic tier too (a near vector, not the same text)
    near = (unit(1) + 0.05 * unit(7)).astype(np.float32)
    assert await cache.lookup(SCOPE, "peru's capital", near, "factual", half) is not None
    clock.advance(60)  # 210 s old: beyond 2 × TTL
    assert await cache.lookup(SCOPE, "capital of peru", unit(1), "factual", half) is None
    full = replace(FACTUAL, ttl_stretch=3.0)
    assert await cache.lookup(SCOPE, "capital of peru", unit(1), "factual", full) is not None
    clock.advance(100)  # 310 s: beyond the largest stretch
    assert await cache.lookup(SCOPE, "capital of peru", unit(1), "factual", full) is None


async def test_never_stale_for_a_category_without_bounds(
    cache: SemanticCache, clock: Clock
) -> None:
    await _stored(cache)
    clock.advance(150)
    assert await cache.lookup(SCOPE, "weather in lima", unit(2), "time_sensitive", FIXED) is None
    with pytest.raises(PolicyError, match="ttl_stretch"):
        replace(FIXED, ttl_stretch=2.0)
    # a stretched lookup of another category does not reach the time-sensitive entry
    stretched = replace(FACTUAL, ttl_stretch=3.0)
    assert await cache.lookup(SCOPE, "weather in lima", unit(2), "factual", stretched) is None


async def test_sweeper_keeps_entries_a_stretch_could_still_serve(
    cache: SemanticCache, clock: Clock
) -> None:
    await _stored(cache)
    clock.advance(150)
    assert await cache.sweep() == 1  # the time-sensitive entry only
    assert [e.request_text for e in await cache.list_entries()] == ["capital of peru"]
    full = replace(FACTUAL, ttl_stretch=3.0)
    assert await cache.lookup(SCOPE, "capital of peru", unit(1), "factual", full) is not None
    clock.advance(151)  # 301 s: past TTL × ttl_max_factor
    assert await cache.sweep() == 1
    assert await cache.list_entries() == []
    assert cache.counters().entries == 0
