"""Several replicas on one real PostgreSQL, and the store going away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from cache import CacheUnavailable, CategoryPolicy, SemanticCache, migrate_async
from tests.cache.conftest import POLICY, SCOPE, entry, unit
from tests.pg import PgServer

pytestmark = pytest.mark.postgres


async def _within(seconds: float, probe: Callable[[], Awaitable[bool]]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if await probe():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"not seen within {seconds}s")


async def test_migration_creates_tables(pg_url: str) -> None:
    await migrate_async(pg_url)
    await migrate_async(pg_url)  # idempotent
    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    finally:
        await engine.dispose()
    assert {"cache_entries", "cache_changes", "alembic_version"} <= set(names)


async def test_replicas_see_writes_deletes_and_flushes(pg_url: str) -> None:
    a = await SemanticCache.open(pg_url, sync_interval_s=0.2)
    b = await SemanticCache.open(pg_url, sync_interval_s=0.2)
    try:
        a.submit(entry("written on a", unit(1), category="code"), POLICY)
        a.submit(entry("also on a", unit(2), category="code"), POLICY)
        a.submit(entry("math on a", unit(3), category="math"), POLICY)
        await a.flush()

        async def b_hits(i: int, text: str, cat: str = "code") -> bool:
            return await b.lookup(SCOPE, text, unit(i), cat, POLICY) is not None

        assert await _within(1.0, lambda: b_hits(1, "written on a")) < 1.0
        hit = await b.lookup(SCOPE, "paraphrase", unit(1), "code", POLICY)
        assert hit is not None and hit.response["choices"][0]["message"]["content"] == "42"

        await a.delete(hit.entry_id)
        await _within(1.0, lambda: _not(b_hits(1, "written on a")))

        assert await b.flush_entries(category="math") == 1
        await _within(1.0, lambda: _not(_a_hits(a, 3, "math on a", "math")))
        assert await _a_hits(a, 2, "also on a", "code")

        b.submit(entry("written on b", unit(4)), POLICY)
        await b.flush()
        await _within(1.0, lambda: _a_hits(a, 4, "written on b", "factual"))
    finally:
        await a.close()
        await b.close()


async def _a_hits(c: SemanticCache, i: int, text: str, cat: str) -> bool:
    return await c.lookup(SCOPE, text, unit(i), cat, POLICY) is not None


async def _not(aw: Awaitable[bool]) -> bool:
    return not await aw


async def test_database_down_fails_open_and_recovers() -> None:
    server = PgServer().init()
    server.start()
    try:
        url = await server.create_database()
        c = await SemanticCache.open(url, sync_interval_s=0.1)
        try:
            c.submit(entry("cached before outage", unit(1)), POLICY)
            await c.flush()
            server.stop()
            # Held in memory: still served; unknown: a miss; nothing raises.
            assert await c.lookup(SCOPE, "cached before outage", unit(1), "factual", POLICY)
            assert await c.lookup(SCOPE, "never seen", unit(2), "factual", POLICY) is None
            assert await c.neighbours("acme", unit(2), k=3, floor=0.9) == []
            assert c.submit(entry("during outage", unit(3)), POLICY)
            await c.flush()
            counters = c.counters()
            assert counters.dropped_store_error == 1 and not counters.store_available
            with pytest.raises(CacheUnavailable):
                await c.list_entries()
            await asyncio.sleep(0.3)  # the poller keeps failing quietly

            server.start()
            c.submit(entry("after outage", unit(4)), POLICY)
            await c.flush()
            assert await c.lookup(SCOPE, "after outage", unit(4), "factual", POLICY)
            assert c.counters().store_available
            assert {e.request_text for e in await c.list_entries()} == {
                "cached before outage", "after outage"}  # fmt: skip
        finally:
            await c.close()
    finally:
        server.destroy()


async def test_quota_is_shared_by_replicas(pg_url: str) -> None:
    policy = CategoryPolicy(max_entries=3, eviction="fifo")
    a = await SemanticCache.open(pg_url, sync_interval_s=0.1)
    b = await SemanticCache.open(pg_url, sync_interval_s=0.1)
    try:
        for i in range(3):
            a.submit(entry(f"a{i}", unit(i), category="code"), policy)
        await a.flush()
        b.submit(entry("b0", unit(10), category="code"), policy)
        await b.flush()
        await a.sync()
        assert a.counters().entries == b.counters().entries == 3
        assert await a.lookup(SCOPE, "a0", unit(0), "code", policy) is None
    finally:
        await a.close()
        await b.close()


async def test_deleted_rows_are_purged_on_postgresql(pg_url: str) -> None:
    # The purge's statements (a delete through a limited subquery of the same table, the
    # newest row emptied) on PostgreSQL, with another replica's delete in between.
    a = await SemanticCache.open(pg_url, sync_interval_s=0.1)
    b = await SemanticCache.open(pg_url, sync_interval_s=0.1)
    try:
        for i in range(4):
            a.submit(entry(f"private {i}", unit(i), answer=f"secret {i}"), POLICY)
        await a.flush()
        hit = await a.lookup(SCOPE, "private 0", unit(0), "factual", POLICY)
        assert hit is not None
        await b.delete(hit.entry_id)
        assert await a.flush_entries(tenant=SCOPE.tenant) == 3
        async with a.store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text("SELECT id, request_text, answer, length(vector) FROM cache_entries")
                )
            ).all()
        assert [tuple(r)[1:] for r in rows] == [("", "", 0)]
        a.submit(entry("after", unit(9)), POLICY)
        await a.flush()
        await _within(1.0, lambda: _a_hits(b, 9, "after", "factual"))
        assert await b.lookup(SCOPE, "private 3", unit(3), "factual", POLICY) is None
    finally:
        await a.close()
        await b.close()
