"""``on_space_change="reembed"``: a store written by one embedder is embedded again by
another and keeps its entries; an interrupted run is resumed, never taken for finished;
index snapshots of the replaced vectors are not restored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import cache.vector_space as vector_space
from cache import CacheError, SemanticCache, SpaceMismatch
from cache.vector_space import SpaceRecord
from tests.cache.conftest import POLICY, SCOPE, Clock, entry, unit
from tests.cache.test_vector_space import MINI, OTHER


def new_vector(text: str) -> np.ndarray:
    """The "new model": question i goes to unit(1000 + i), unrelated to the old unit(i)."""
    return unit(1000 + int(text.rsplit(" ", 1)[1]))


class NewModel:
    def __init__(self, fail_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.fail_after = fail_after

    async def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise CacheError("the new model went away")
        self.seen.extend(texts)
        return np.stack([new_vector(t) for t in texts]).astype(np.float32)


async def fill(url: str, clock: Clock, n: int, snapshot_dir: Path | None = None) -> None:
    c = await SemanticCache.open(url, clock=clock, space=MINI, snapshot_dir=snapshot_dir)
    for i in range(n):
        c.submit(entry(f"question {i}", unit(i)), POLICY)
    await c.flush()
    await c.close()


async def record(url: str) -> tuple[SpaceRecord, float]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT value, updated_at FROM cache_meta WHERE key = 'vector_space'")
            )
        ).one()
    await engine.dispose()
    return SpaceRecord.decode(row.value), float(row.updated_at)


async def open_reembedding(url: str, clock: Clock, model: NewModel) -> SemanticCache:
    """A cache for OTHER that re-embeds a store of another space with ``model``."""
    return await SemanticCache.open(
        url, clock=clock, space=OTHER, on_space_change="reembed", reembed=model
    )


async def write_record(url: str, value: str, updated_at: float) -> None:
    """Sets the store's space record as another replica would have left it."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE cache_meta SET value = :v, updated_at = :t"),
            {"v": value, "t": updated_at},
        )
    await engine.dispose()


async def hits(c: SemanticCache, n: int, vector: object = new_vector) -> int:
    """Semantic hits for question 0..n-1 asked in other words (no exact-tier match)."""
    found = 0
    for i in range(n):
        vec = vector(f"question {i}")  # type: ignore[operator]
        asked = f"please, question {i}"
        found += await c.lookup(SCOPE, asked, vec, "factual", POLICY) is not None
    return found


async def _reembed_keeps_every_entry(url: str, clock: Clock) -> None:
    await fill(url, clock, 5)
    model = NewModel()
    c = await SemanticCache.open(
        url, clock=clock, space=OTHER, on_space_change="reembed", reembed=model
    )
    try:
        assert sorted(model.seen) == [f"question {i}" for i in range(5)]
        assert c.counters().entries == 5
        assert await hits(c, 5) == 5  # found by the new model's vectors ...
        assert await hits(c, 5, lambda t: unit(int(t.rsplit(" ", 1)[1]))) == 0  # ... only
        assert c.space_generation == 1
    finally:
        await c.close()
    stored, _ = await record(url)
    assert stored.space.name == OTHER.name and stored.reembedded_through is None
    assert stored.generation == 1
    # The store is the new model's now: the old one is refused in turn.
    with pytest.raises(SpaceMismatch):
        await SemanticCache.open(url, clock=clock, space=MINI)


async def test_reembed_keeps_every_entry_under_the_new_model(sqlite_url: str, clock: Clock) -> None:
    await _reembed_keeps_every_entry(sqlite_url, clock)


@pytest.mark.postgres
async def test_reembed_on_postgres(pg_url: str, clock: Clock) -> None:
    await _reembed_keeps_every_entry(pg_url, clock)


async def interrupted_after_one_page(
    url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five entries of MINI; a re-embedding for OTHER in pages of two that dies after one."""
    monkeypatch.setattr(vector_space, "REEMBED_PAGE", 2)
    await fill(url, clock, 5)
    with pytest.raises(CacheError, match="went away"):
        await SemanticCache.open(
            url, clock=clock, space=OTHER, on_space_change="reembed", reembed=NewModel(2)
        )


async def test_an_interrupted_reembedding_is_resumed_not_trusted(
    sqlite_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await interrupted_after_one_page(sqlite_url, clock, monkeypatch)
    stored, _ = await record(sqlite_url)
    assert stored.space.name == OTHER.name and stored.reembedded_through == 2
    # Half done: neither model may use it as it is.
    with pytest.raises(SpaceMismatch, match=r"half re-embedded.*reembed"):
        await SemanticCache.open(sqlite_url, clock=clock, space=OTHER)
    with pytest.raises(SpaceMismatch):
        await SemanticCache.open(sqlite_url, clock=clock, space=MINI)
    # The run was this process's (a retry after a store outage, a restarted container):
    # it resumes at once where it was, without waiting for the record to go stale.
    model = NewModel()
    c = await open_reembedding(sqlite_url, clock, model)
    try:
        assert model.seen == ["question 2", "question 3", "question 4"]
        assert await hits(c, 5) == 5
    finally:
        await c.close()


async def test_a_stalled_run_of_another_replica_is_taken_over(
    sqlite_url: str, clock: Clock
) -> None:
    await fill(sqlite_url, clock, 3)
    stalled = SpaceRecord(OTHER, generation=1, reembedded_through=1, owner="gone:1").encode()
    await write_record(sqlite_url, stalled, time.time() - vector_space.REEMBED_STALE_S - 1)
    model = NewModel()
    c = await open_reembedding(sqlite_url, clock, model)
    try:
        assert model.seen == ["question 1", "question 2"]  # id 1 was done by the other
    finally:
        await c.close()


async def test_a_replica_waits_for_another_replicas_reembedding(
    sqlite_url: str, clock: Clock
) -> None:
    await fill(sqlite_url, clock, 3)
    busy = SpaceRecord(OTHER, generation=1, reembedded_through=1, owner="busy:1").encode()
    await write_record(sqlite_url, busy, time.time())
    model = NewModel()
    opening = asyncio.create_task(open_reembedding(sqlite_url, clock, model))
    await asyncio.sleep(0.5)
    assert not opening.done()  # the other replica's record is fresh: it waits
    done = json.loads(busy)
    del done["reembedded_through"], done["owner"]
    await write_record(sqlite_url, json.dumps(done), time.time())  # "the other" finishes
    c = await asyncio.wait_for(opening, timeout=10)
    try:
        assert model.seen == []  # nothing embedded twice
        assert c.serving and c.space_generation == 1
    finally:
        await c.close()


async def test_a_snapshot_of_the_replaced_vectors_is_not_restored(
    sqlite_url: str, clock: Clock, tmp_path: Path
) -> None:
    snap = tmp_path / "snapshot"
    await fill(sqlite_url, clock, 4, snapshot_dir=snap)
    assert (snap / "meta.json").exists()
    c = await SemanticCache.open(
        sqlite_url,
        clock=clock,
        space=OTHER,
        on_space_change="reembed",
        reembed=NewModel(),
        snapshot_dir=snap,
    )
    try:
        assert c.load_report is None  # rebuilt from SQL: same ids, other vectors
        assert await hits(c, 4) == 4
    finally:
        await c.close()  # saves a snapshot of generation 1 ...
    c = await SemanticCache.open(sqlite_url, clock=clock, space=OTHER, snapshot_dir=snap)
    try:
        assert c.load_report is not None and c.load_report.restored == 4  # ... which is used
        assert await hits(c, 4) == 4
    finally:
        await c.close()


async def test_reembed_needs_the_embedder(sqlite_url: str, clock: Clock) -> None:
    with pytest.raises(CacheError, match="reembed needs"):
        await SemanticCache.open(sqlite_url, clock=clock, space=MINI, on_space_change="reembed")


async def test_a_half_reembedded_store_can_be_flushed(
    sqlite_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await interrupted_after_one_page(sqlite_url, clock, monkeypatch)
    c = await SemanticCache.open(sqlite_url, clock=clock, space=OTHER, on_space_change="flush")
    try:
        assert c.counters().entries == 0 and c.space_generation == 2
    finally:
        await c.close()
    stored, _ = await record(sqlite_url)
    assert stored.reembedded_through is None
