"""The store remembers which embedder wrote its vectors and refuses (or flushes for)
another one, on SQLite and on a real PostgreSQL shared by two replicas."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from cache import CacheError, SemanticCache, SpaceMismatch, VectorSpace
from tests.cache.conftest import POLICY, SCOPE, Clock, Verdict, entry, unit


def space(name: str, seed: int, noise: float = 0.0) -> VectorSpace:
    """Probe vectors of a made-up model; ``noise`` nudges them as another runtime of the
    same model would (a cosine of about 0.99 at 0.005)."""
    rng = np.random.default_rng(seed)
    probe = rng.normal(size=(8, 384)).astype(np.float32)
    if noise:
        probe += np.random.default_rng(seed + 1000).normal(scale=noise * 20, size=probe.shape)
    return VectorSpace(name, (probe / np.linalg.norm(probe, axis=1, keepdims=True)))


MINI = space("all-MiniLM-L6-v2-int8", 1)
MINI_ELSEWHERE = space("minilm via sentence-transformers", 1, noise=0.005)
OTHER = space("paraphrase-multilingual-MiniLM-L12-v2", 2)


async def _fill(url: str, clock: Clock, n: int = 5) -> None:
    c = await SemanticCache.open(url, clock=clock, space=MINI)
    for i in range(n):
        c.submit(entry(f"question {i}", unit(i)), POLICY)
    await c.flush()
    await c.close()


async def _live(url: str, clock: Clock, s: VectorSpace, on_change: str = "refuse") -> int:
    c = await SemanticCache.open(url, clock=clock, space=s, on_space_change=on_change)  # type: ignore[arg-type]
    try:
        hits = [
            await c.lookup(SCOPE, f"question {i}", unit(i), "factual", POLICY) for i in range(5)
        ]
        assert c.counters().entries == sum(h is not None for h in hits)
        return c.counters().entries
    finally:
        await c.close()


def test_the_same_model_agrees_and_another_does_not() -> None:
    assert MINI.agreement(MINI_ELSEWHERE) > 0.95
    assert MINI.agreement(OTHER) < 0.5
    narrow = VectorSpace("768-wide", np.ones((8, 768), np.float32))
    assert MINI.agreement(narrow) == -1.0
    assert VectorSpace.decode(MINI.encode()).agreement(MINI) == pytest.approx(1.0)


async def test_same_space_keeps_entries_another_is_refused(sqlite_url: str, clock: Clock) -> None:
    await _fill(sqlite_url, clock)
    assert await _live(sqlite_url, clock, MINI_ELSEWHERE) == 5
    with pytest.raises(SpaceMismatch, match=r"all-MiniLM-L6-v2-int8.*multilingual.*flush"):
        await SemanticCache.open(sqlite_url, clock=clock, space=OTHER)
    assert await _live(sqlite_url, clock, MINI) == 5  # refusing changed nothing


async def test_flush_deletes_the_old_space_and_adopts_the_new(
    sqlite_url: str, clock: Clock
) -> None:
    await _fill(sqlite_url, clock)
    assert await _live(sqlite_url, clock, OTHER, "flush") == 0
    # The store is the new model's now: the old one is refused in turn.
    with pytest.raises(SpaceMismatch):
        await SemanticCache.open(sqlite_url, clock=clock, space=MINI)
    engine = create_async_engine(sqlite_url)
    async with engine.connect() as conn:
        reasons = (
            await conn.execute(sa.text("SELECT DISTINCT delete_reason FROM cache_entries"))
        ).all()
    await engine.dispose()
    assert reasons == [("embedder",)]


async def test_a_store_without_a_record_takes_the_first_space(
    sqlite_url: str, clock: Clock
) -> None:
    # A store written before records existed: its entries stay, the embedder is adopted.
    await _fill(sqlite_url, clock)
    engine = create_async_engine(sqlite_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM cache_meta"))
    await engine.dispose()
    assert await _live(sqlite_url, clock, MINI_ELSEWHERE) == 5
    with pytest.raises(SpaceMismatch):
        await SemanticCache.open(sqlite_url, clock=clock, space=OTHER)


async def test_bad_on_space_change_is_refused(sqlite_url: str, clock: Clock) -> None:
    with pytest.raises(CacheError, match="refuse, flush or reembed"):
        await SemanticCache.open(sqlite_url, clock=clock, space=MINI, on_space_change="drop")  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_replicas_on_postgres_share_one_space(pg_url: str, clock: Clock) -> None:
    first = await SemanticCache.open(pg_url, clock=clock, space=MINI)
    try:
        first.submit(entry("question 0", unit(0)), POLICY)
        await first.flush()
        with pytest.raises(SpaceMismatch):
            await SemanticCache.open(pg_url, clock=clock, space=OTHER)
        second = await SemanticCache.open(pg_url, clock=clock, space=MINI_ELSEWHERE)
        try:
            assert await second.lookup(SCOPE, "question 0", unit(0), "factual", POLICY)
        finally:
            await second.close()
    finally:
        await first.close()


async def _two_replicas_change_embedder(url: str, clock: Clock) -> None:
    """Replica ``old`` runs MINI; replica ``new`` starts with OTHER and flushes. From then on
    ``old`` must neither write into the store nor serve from it, and ``new`` must never
    load a vector of ``old``'s."""
    old = await SemanticCache.open(url, clock=clock, space=MINI, sync_interval_s=3600)
    try:
        old.submit(entry("question 0", unit(0)), POLICY)
        await old.flush()
        assert old.serving and old.counters().space_current
        new = await SemanticCache.open(
            url, clock=clock, space=OTHER, on_space_change="flush", sync_interval_s=3600
        )
        try:
            # The old replica has not looked yet: its next insert is refused by the store.
            assert old.submit(entry("question 1", unit(1)), POLICY)
            await old.flush()
            assert not old.serving
            assert old.space_lost is not None and "another embedder" in old.space_lost
            assert not old.counters().space_current
            assert await old.lookup(SCOPE, "question 0", unit(0), "factual", POLICY) is None
            assert not old.submit(entry("question 2", unit(2)), POLICY)
            # The new replica's store holds none of the old replica's rows.
            await new.sync()
            assert new.counters().entries == 0
            new.submit(entry("question 3", unit(3)), POLICY)
            await new.flush()
            assert await new.lookup(SCOPE, "question 3", unit(3), "factual", POLICY)
        finally:
            await new.close()
    finally:
        await old.close()
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        live = (
            await conn.execute(sa.text("SELECT request_text FROM cache_entries WHERE NOT deleted"))
        ).all()
    await engine.dispose()
    assert live == [("question 3",)]


async def test_a_replica_whose_embedder_was_replaced_stops_writing_and_serving(
    sqlite_url: str, clock: Clock
) -> None:
    await _two_replicas_change_embedder(sqlite_url, clock)


async def test_a_replica_notices_the_change_in_the_feed_before_loading_it(
    sqlite_url: str, clock: Clock
) -> None:
    old = await SemanticCache.open(sqlite_url, clock=clock, space=MINI, sync_interval_s=3600)
    try:
        new = await SemanticCache.open(
            sqlite_url, clock=clock, space=OTHER, on_space_change="flush", sync_interval_s=3600
        )
        try:
            new.submit(entry("question 5", unit(5)), POLICY)
            await new.flush()
        finally:
            await new.close()
        await old.sync()  # reads the new replica's put, then the record, and stops
        assert not old.serving
        assert old.counters().entries == 0  # the other space's vector was never loaded
        assert await old.lookup(SCOPE, "question 5", unit(5), "factual", POLICY) is None
    finally:
        await old.close()


@pytest.mark.postgres
async def test_replicas_on_postgres_stop_the_one_left_on_the_old_embedder(
    pg_url: str, clock: Clock
) -> None:
    await _two_replicas_change_embedder(pg_url, clock)


class RecordingChecker:
    """Accepts every candidate and remembers the candidate vectors it was given."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def check(self, query_text: str, query_vec: object, cand_text: str, cand_vec: np.ndarray,
              threshold: float | None = None) -> Verdict:  # fmt: skip
        self.seen.append(np.array(cand_vec))
        return Verdict(score=1.0, equivalent=True)


async def test_the_check_reads_the_vector_the_index_searched_with(
    sqlite_url: str, clock: Clock
) -> None:
    # Another replica re-embeds the row behind this one's back (before its next poll):
    # a document fetched from SQL then carries a vector of the other space. The check
    # must compare against the vector this index found the candidate with.
    checker = RecordingChecker()
    c = await SemanticCache.open(sqlite_url, clock=clock, space=MINI, checker=checker)
    try:
        c.submit(entry("question 0", unit(0)), POLICY)
        await c.flush()
        engine = create_async_engine(sqlite_url)
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE cache_entries SET vector = :v"), {"v": unit(999).tobytes()}
            )
        await engine.dispose()
        for eid in list(c.index.meta):
            c.docs.drop(eid)  # not held in memory: the document is read from SQL
        hit = await c.lookup(SCOPE, "question zero", unit(0), "factual", POLICY)
        assert hit is not None
        assert len(checker.seen) == 1 and np.allclose(checker.seen[0], unit(0))
    finally:
        await c.close()
