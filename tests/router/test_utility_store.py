"""Example utilities shared by replicas: atomic SQL increments, refreshed copies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cache import migrate_async
from router import SharedUtilities, Utility, UtilityStoreUnavailable
from router.utility import update_utility


async def _replicas(
    url: str, refresh_s: float = 5.0
) -> tuple[SharedUtilities, SharedUtilities, list[AsyncEngine]]:
    engines = [create_async_engine(url), create_async_engine(url)]
    a = SharedUtilities(engines[0], refresh_s=refresh_s)
    return a, SharedUtilities(engines[1], refresh_s=refresh_s), engines


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> AsyncIterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    await migrate_async(url)  # the table comes from migration 0005, as in production
    yield url


async def _concurrent_credit(a: SharedUtilities, b: SharedUtilities) -> None:
    """Two replicas credit the same examples at the same time."""
    rewards = [1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0]
    jobs = []
    for i, r in enumerate(rewards):
        replica = a if i % 2 == 0 else b
        jobs.append(replica.update_many(["7", "9"], r))
    await asyncio.gather(*jobs)
    expected = Utility(1.0 + sum(rewards), 1.0 + sum(1.0 - r for r in rewards))
    for replica in (a, b):
        got = await replica.read(["7", "9"])
        assert got["7"] == pytest.approx(expected) and got["9"] == pytest.approx(expected)


async def test_two_replicas_on_one_sqlite_file_count_every_outcome(sqlite_url: str) -> None:
    a, b, engines = await _replicas(sqlite_url, refresh_s=0.05)
    try:
        await _concurrent_credit(a, b)
    finally:
        for e in engines:
            await e.dispose()


async def test_a_replica_sees_the_others_update_after_refresh(sqlite_url: str) -> None:
    a, b, engines = await _replicas(sqlite_url)
    try:
        await b.refresh()  # b's copy is current: nothing stored yet
        assert b.utility("42") == 0.5
        state = await a.update("42", 0.0)
        assert a.utility("42") == pytest.approx(state.mean) == pytest.approx(1 / 3)
        assert b.utility("42") == 0.5  # b has not refreshed: reads never hit SQL
        assert await b.refresh() >= 1
        assert b.utility("42") == pytest.approx(1 / 3)
        # b's own update builds on a's, not on its stale copy.
        after = await b.update("42", 1.0)
        assert after == pytest.approx(Utility(2.0, 2.0))
        await a.refresh()
        assert a.utility("42") == pytest.approx(0.5)
        # The background loop refreshes until told to stop.
        await b.update("43", 1.0)
        stopping = asyncio.Event()
        loop = asyncio.create_task(a.run(stopping))
        for _ in range(100):
            if a.utility("43") != 0.5:
                break
            await asyncio.sleep(0.02)
        stopping.set()
        await asyncio.wait_for(loop, 5)
        assert a.utility("43") == pytest.approx(2 / 3)
    finally:
        for e in engines:
            await e.dispose()


async def test_decay_is_applied_in_sql_as_in_memory(sqlite_url: str) -> None:
    engine = create_async_engine(sqlite_url)
    try:
        shared = SharedUtilities(engine, decay=0.5)
        local = Utility()
        for reward in (1.0, 1.0, 0.0, 1.0):
            local = update_utility(local, reward, decay=0.5)
            stored = await shared.update("1", reward)
        assert stored == pytest.approx(local)
        await shared.forget(["1"])
        assert await shared.read(["1"]) == {}
    finally:
        await engine.dispose()


async def test_store_errors_raise_the_router_error(tmp_path: Path) -> None:
    # A database without the table (never migrated): the driver's error, wrapped.
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}")
    try:
        with pytest.raises(UtilityStoreUnavailable):
            await SharedUtilities(engine).update("1", 1.0)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_replicas_on_postgres_count_every_outcome(pg_url: str) -> None:
    await migrate_async(pg_url)
    a, b, engines = await _replicas(pg_url)
    try:
        await _concurrent_credit(a, b)
        await b.refresh()
        assert b.utility("7") == pytest.approx(a.utility("7"))
    finally:
        for e in engines:
            await e.dispose()
