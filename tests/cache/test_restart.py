from __future__ import annotations

import json
from pathlib import Path

import pytest

from cache import CacheError, CacheScope, CategoryPolicy, SemanticCache
from tests.cache.conftest import POLICY, SCOPE, Clock, entry, unit

OTHER = CacheScope("globex", "chat", "fp0")


async def _populate(url: str, clock: Clock, snapshot_dir: Path | None) -> None:
    c = await SemanticCache.open(url, clock=clock, snapshot_dir=snapshot_dir)
    for i in range(30):
        c.submit(entry(f"live {i}", unit(i)), POLICY)
    c.submit(entry("short lived", unit(100)), CategoryPolicy(ttl_seconds=10))
    c.submit(entry("to delete", unit(101)), POLICY)
    c.submit(entry("other tenant", unit(102), scope=OTHER), POLICY)
    await c.flush()
    doomed = await c.list_entries(text_contains="to delete")
    await c.delete(doomed[0].entry_id)
    await c.close()


async def _check(c: SemanticCache) -> None:
    for i in range(30):
        hit = await c.lookup(SCOPE, f"paraphrase {i}", unit(i), "factual", POLICY)
        assert hit is not None and not hit.exact
        assert await c.lookup(SCOPE, f"live {i}", unit(i), "factual", POLICY) is not None
    assert await c.lookup(SCOPE, "x", unit(100), "factual", POLICY) is None  # expired
    assert await c.lookup(SCOPE, "x", unit(101), "factual", POLICY) is None  # deleted
    assert await c.lookup(OTHER, "x", unit(102), "factual", POLICY) is not None
    assert await c.lookup(SCOPE, "x", unit(102), "factual", POLICY) is None
    assert c.counters().entries == 31


async def test_restart_from_sql_rebuild(sqlite_url: str, clock: Clock) -> None:
    await _populate(sqlite_url, clock, None)
    clock.advance(11)
    c = await SemanticCache.open(sqlite_url, clock=clock)
    try:
        await _check(c)
    finally:
        await c.close()


async def test_restart_from_snapshot_replays_newer_rows(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    await _populate(sqlite_url, clock, snap)
    meta = json.loads((snap / "meta.json").read_text())
    assert meta["entries"] == 32 and meta["tenants"] == ["acme", "globex"]
    # Another process writes and deletes after the snapshot was taken.
    other = await SemanticCache.open(sqlite_url, clock=clock)
    other.submit(entry("written later", unit(200)), POLICY)
    await other.flush()
    await other.delete((await other.list_entries(text_contains="live 0"))[0].entry_id)
    await other.close()
    clock.advance(11)
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap)
    try:
        assert await c.lookup(SCOPE, "x", unit(200), "factual", POLICY) is not None
        assert await c.lookup(SCOPE, "live 0", unit(0), "factual", POLICY) is None
        assert await c.lookup(SCOPE, "live 1", unit(1), "factual", POLICY) is not None
        assert await c.lookup(OTHER, "x", unit(102), "factual", POLICY) is not None
        assert c.counters().entries == 31
    finally:
        await c.close()


async def test_snapshot_of_another_dimension_is_ignored(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    await _populate(sqlite_url, clock, snap)
    meta = json.loads((snap / "meta.json").read_text())
    (snap / "meta.json").write_text(json.dumps({**meta, "dim": 768}))
    clock.advance(11)
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap)
    try:
        await _check(c)
    finally:
        await c.close()


async def test_store_of_another_dimension_is_refused(sqlite_url: str, clock: Clock) -> None:
    await _populate(sqlite_url, clock, None)
    with pytest.raises(CacheError, match="another embedding model"):
        await SemanticCache.open(sqlite_url, clock=clock, dim=768)
