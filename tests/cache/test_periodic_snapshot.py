"""Periodic snapshots: a cache that dies without ``close`` restarts from its last periodic
snapshot, reads from SQL only what was written after it, and serves exactly the live
entries."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from cache import CacheError, CacheScope, CategoryPolicy, SemanticCache
from cache.snapshot import save_snapshot
from proxy.settings import CacheSettings
from tests.cache.conftest import POLICY, SCOPE, Clock, entry, unit

OTHER = CacheScope("globex", "chat", "fp0")
SHORT = CategoryPolicy(similarity_threshold=0.85, ttl_seconds=10)


async def crash(c: SemanticCache) -> None:
    """Ends a cache as a killed process would: no final snapshot, nothing flushed. Holds
    the snapshot lock so no save is cut off half-way (the test's files stay readable)."""
    async with c._snapshot_lock:
        tasks = [*c.bg.tasks, *([c._snapshot_task] if c._snapshot_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await c._shutdown_resources()


async def _fill(c: SemanticCache) -> None:
    for i in range(30):
        c.submit(entry(f"live {i}", unit(i)), POLICY)
    c.submit(entry("short lived", unit(100)), SHORT)
    c.submit(entry("to delete", unit(101)), POLICY)
    c.submit(entry("other tenant", unit(102), scope=OTHER), POLICY)
    await c.flush()
    doomed = await c.list_entries(text_contains="to delete")
    await c.delete(doomed[0].entry_id)


async def _wait_for_snapshot(c: SemanticCache, entries: int) -> None:
    for _ in range(400):
        if c.last_snapshot is not None and c.last_snapshot.entries == entries:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no periodic snapshot of {entries} entries: {c.last_snapshot}")


async def _assert_serves(c: SemanticCache, live: range, gone: list[int]) -> None:
    for i in live:
        hit = await c.lookup(SCOPE, f"paraphrase {i}", unit(i), "factual", POLICY)
        assert hit is not None and not hit.exact, i
        exact = await c.lookup(SCOPE, f"live {i}", unit(i), "factual", POLICY)
        assert exact is not None and exact.exact, i
    for seed in gone:
        assert await c.lookup(SCOPE, "x", unit(seed), "factual", POLICY) is None, seed
    assert await c.lookup(OTHER, "x", unit(102), "factual", POLICY) is not None
    assert await c.lookup(SCOPE, "x", unit(102), "factual", POLICY) is None  # other tenant


async def test_crash_restarts_from_the_periodic_snapshot(
    sqlite_url: str, clock: Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snap = tmp_path / "snap"
    c = await SemanticCache.open(
        sqlite_url, clock=clock, snapshot_dir=snap, snapshot_interval_s=0.02
    )
    await _fill(c)
    await _wait_for_snapshot(c, 32)  # 30 live + short-lived + other tenant
    await crash(c)
    assert json.loads((snap / "meta.json").read_text())["entries"] == 32

    clock.advance(11)  # the short-lived entry expires while the cache is down
    caplog.set_level(logging.INFO, logger="cache.snapshot")
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap)
    try:
        report = c.load_report
        assert report is not None and report.path == snap
        assert (report.restored, report.fetched, report.stale) == (31, 0, 1)
        assert any("31 restored, 0 read from SQL" in r.getMessage() for r in caplog.records)
        await _assert_serves(c, range(30), gone=[100, 101])
        assert c.counters().entries == 31
        by_tenant = {s.tenant: s.entries for s in await c.stats()}
        assert by_tenant == {"acme": 30, "globex": 1}
    finally:
        await c.close()


async def test_entries_written_and_deleted_after_the_snapshot_are_reconciled(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap, snapshot_interval_s=0)
    assert c._snapshot_task is None  # 0: only at close
    await _fill(c)
    timing = await c.snapshot()
    assert timing is not None and timing.entries == 32 and timing.blocked_s <= timing.total_s
    # After the last snapshot: 5 more entries, one old and one new entry deleted.
    for i in range(30, 35):
        c.submit(entry(f"live {i}", unit(i)), POLICY)
    await c.flush()
    for text in ("live 3", "live 34"):
        found = await c.list_entries(text_contains=text)
        await c.delete(next(e.entry_id for e in found if e.request_text == text))
    await crash(c)

    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap)
    try:
        report = c.load_report
        assert report is not None
        # Only the 4 surviving newer entries were read from SQL; the deleted old one is
        # dropped from the loaded graph.
        assert (report.restored, report.fetched, report.stale) == (31, 4, 1)
        await _assert_serves(c, range(4, 34), gone=[3, 34, 101])
        assert c.counters().entries == 35  # 31 restored + 4 fetched
    finally:
        await c.close()


async def test_a_save_cut_off_between_its_renames_is_still_found(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap, snapshot_interval_s=0)
    await _fill(c)
    await c.snapshot()
    await crash(c)
    # The crash came after ``snap`` was renamed away and before ``snap.tmp`` took its place.
    os.replace(snap, tmp_path / "snap.tmp")
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap)
    try:
        assert c.load_report is not None and c.load_report.path == tmp_path / "snap.tmp"
        await _assert_serves(c, range(30), gone=[101])
    finally:
        await c.close()
    # close() wrote a fresh snapshot under the real name; an unfinished ``.tmp`` (no
    # meta.json yet) next to it is ignored.
    assert (snap / "meta.json").exists()
    (tmp_path / "snap.tmp").mkdir()
    (tmp_path / "snap.tmp" / "labels.npy").write_bytes(b"partial")
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap)
    try:
        assert c.load_report is not None and c.load_report.path == snap
    finally:
        await c.close()


async def test_close_waits_for_a_running_periodic_save(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    c = await SemanticCache.open(
        sqlite_url, clock=clock, snapshot_dir=snap, snapshot_interval_s=0.01
    )
    await _fill(c)
    await _wait_for_snapshot(c, 32)
    await c.close()  # must not race the loop's save on snap.tmp
    assert not (tmp_path / "snap.tmp").exists()
    assert json.loads((snap / "meta.json").read_text())["entries"] == 32


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
async def test_bad_interval_is_refused(sqlite_url: str, bad: float) -> None:
    with pytest.raises(CacheError, match="snapshot_interval_s"):
        await SemanticCache.open(sqlite_url, snapshot_interval_s=bad)
    with pytest.raises(ValidationError):
        CacheSettings(snapshot_interval_s=bad)


@pytest.mark.parametrize("fork", [True, False], ids=["forked-writer", "in-process"])
async def test_both_writers_make_the_same_loadable_snapshot(
    sqlite_url: str, clock: Clock, tmp_path: Path, fork: bool
) -> None:
    snap = tmp_path / "snap"
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_interval_s=0)
    await _fill(c)
    timing = await save_snapshot(c.index, snap, c._executor, c.last_seq, clock(), fork=fork)
    assert timing.entries == 32
    await crash(c)
    c = await SemanticCache.open(sqlite_url, clock=clock, snapshot_dir=snap)
    try:
        report = c.load_report
        assert report is not None and (report.restored, report.fetched) == (32, 0)
        await _assert_serves(c, range(30), gone=[101])
        # The loaded vector rows have room to grow: new entries do not copy them (at 1M
        # entries that copy held lookups for seconds).
        rows = c.index.rows.data
        for i in range(40, 60):
            c.submit(entry(f"live {i}", unit(i)), POLICY)
        await c.flush()
        assert c.index.rows.data is rows and c.counters().entries == 52
        await _assert_serves(c, range(40, 60), gone=[101])
    finally:
        await c.close()


async def test_a_failing_save_keeps_serving_and_is_counted(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a directory")
    c = await SemanticCache.open(
        sqlite_url, clock=clock, snapshot_dir=tmp_path / "file" / "snap", snapshot_interval_s=0.01
    )
    try:
        await _fill(c)
        for _ in range(300):
            if c.snapshot_errors:
                break
            await asyncio.sleep(0.01)
        assert c.snapshot_errors >= 1 and c.last_snapshot is None
        await _assert_serves(c, range(30), gone=[101])
        with pytest.raises(OSError):
            await c.snapshot()
    finally:
        await c.close()  # logs the failed final save, still releases the store
