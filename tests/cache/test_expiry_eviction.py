from __future__ import annotations

import pytest
import sqlalchemy as sa

from cache import CategoryPolicy, SemanticCache
from tests.cache.conftest import POLICY, SCOPE, Clock, entry, unit


async def test_ttl_expiry_at_read_time_and_by_sweep(cache: SemanticCache, clock: Clock) -> None:
    short = CategoryPolicy(ttl_seconds=60)
    cache.submit(entry("price of BTC now", unit(1), category="time-sensitive"), short)
    cache.submit(entry("stable fact", unit(2), category="factual"), CategoryPolicy())
    await cache.flush()
    assert await cache.lookup(SCOPE, "price of BTC now", unit(1), "time-sensitive", short)
    clock.advance(59.9)
    assert await cache.lookup(SCOPE, "price of BTC now", unit(1), "time-sensitive", short)
    clock.advance(0.2)
    assert await cache.lookup(SCOPE, "price of BTC now", unit(1), "time-sensitive", short) is None
    assert await cache.neighbours("acme", unit(1), k=3, floor=0.9) == []
    assert len(await cache.list_entries()) == 2  # still in SQL until swept
    assert await cache.sweep() == 1
    assert [e.request_text for e in await cache.list_entries()] == ["stable fact"]
    stats = {s.category: s for s in await cache.stats()}
    assert stats["time-sensitive"].expirations == 1 and stats["time-sensitive"].entries == 0
    assert await cache.lookup(SCOPE, "stable fact", unit(2), "factual", CategoryPolicy())


async def _fill(cache: SemanticCache, clock: Clock, policy: CategoryPolicy, n: int) -> None:
    for i in range(n):
        cache.submit(entry(f"q{i}", unit(i), category="code"), policy)
        await cache.flush()
        clock.advance(1)


async def _hit(cache: SemanticCache, clock: Clock, i: int, policy: CategoryPolicy) -> None:
    assert await cache.lookup(SCOPE, f"q{i}", unit(i), "code", policy) is not None
    clock.advance(1)


@pytest.mark.parametrize(
    ("eviction", "hits", "evicted"),
    [
        ("lru", [0, 2, 1], "q3"),  # q3 is the least recently used
        ("lfu", [0, 0, 1, 3, 2, 2, 3], "q1"),  # counts q0=2 q1=1 q2=2 q3=2
        ("fifo", [0, 0, 0], "q0"),  # hits do not matter: the oldest goes
    ],
)
async def test_quota_eviction(
    cache: SemanticCache, clock: Clock, eviction: str, hits: list[int], evicted: str
) -> None:
    policy = CategoryPolicy(max_entries=4, eviction=eviction, similarity_threshold=0.99)  # type: ignore[arg-type]
    other = CategoryPolicy(max_entries=1)
    cache.submit(entry("unrelated", unit(99), category="math"), other)
    await _fill(cache, clock, policy, 4)
    for i in hits:
        await _hit(cache, clock, i, policy)
    await _fill_one(cache, policy)
    left = sorted(e.request_text for e in await cache.list_entries(category="code"))
    assert evicted not in left and len(left) == 4 and "q4" in left
    assert await cache.lookup(SCOPE, evicted, unit(int(evicted[1:])), "code", policy) is None
    assert [e.request_text for e in await cache.list_entries(category="math")] == ["unrelated"]
    stats = {s.category: s for s in await cache.stats()}
    assert stats["code"].evictions == 1 and stats["code"].entries == 4


async def _fill_one(cache: SemanticCache, policy: CategoryPolicy) -> None:
    cache.submit(entry("q4", unit(4), category="code"), policy)
    await cache.flush()


async def test_batch_larger_than_quota_keeps_the_newest(cache: SemanticCache) -> None:
    policy = CategoryPolicy(max_entries=2, eviction="lfu")
    for i in range(5):
        cache.submit(entry(f"b{i}", unit(i), category="code"), policy)
    await cache.flush()
    assert len(await cache.list_entries(category="code")) == 2
    assert cache.counters().entries == 2


async def test_old_changes_are_pruned_but_the_sequence_never_goes_back(
    cache: SemanticCache, clock: Clock, sqlite_url: str
) -> None:
    for i in range(3):
        cache.submit(entry(f"c{i}", unit(i)), CategoryPolicy())
    await cache.flush()
    seq = cache.counters().last_seq
    clock.advance(2 * 86_400)
    await cache.sweep()  # expires all three (default TTL 1 day) and prunes old changes
    assert await cache.store.max_seq() > seq
    other = await SemanticCache.open(sqlite_url, clock=clock)
    try:
        cache.submit(entry("fresh", unit(9)), CategoryPolicy())
        await cache.flush()
        await other.sync()
        assert await other.lookup(SCOPE, "fresh", unit(9), "factual", CategoryPolicy())
    finally:
        await other.close()


async def _rows(cache: SemanticCache) -> list[tuple[int, str, str, int]]:
    """Every row of cache_entries, deleted ones included, as stored."""
    stmt = sa.text("SELECT id, request_text, answer, length(vector) FROM cache_entries ORDER BY id")
    async with cache.store.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(stmt)]  # type: ignore[misc]


async def test_deleted_rows_leave_the_store_and_ids_are_never_reused(
    cache: SemanticCache, clock: Clock
) -> None:
    # A flush (a tenant's deletion) removes the prompts and answers from disk at once;
    # expired rows go at the next sweep. The newest row stays, emptied, so that SQLite
    # never hands its id out again (a replica or snapshot holding it would serve it).
    for i in range(3):
        cache.submit(entry(f"secret question {i}", unit(i), answer=f"secret {i}"), POLICY)
    await cache.flush()
    assert await cache.flush_entries(tenant=SCOPE.tenant) == 3
    assert await _rows(cache) == [(3, "", "", 0)]
    cache.submit(entry("asked after the flush", unit(7)), POLICY)
    await cache.flush()
    assert [r[0] for r in await _rows(cache)] == [3, 4]
    hit = await cache.lookup(SCOPE, "asked after the flush", unit(7), "factual", POLICY)
    assert hit is not None and hit.entry_id == 4
    assert await cache.lookup(SCOPE, "secret question 2", unit(2), "factual", POLICY) is None

    cache.submit(entry("expires", unit(8)), POLICY)
    await cache.flush()
    clock.advance(2 * POLICY.ttl_seconds)
    assert await cache.sweep() == 2
    assert await _rows(cache) == [(5, "", "", 0)]
