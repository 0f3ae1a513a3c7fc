"""Background work of a cache: the write-behind writer, the change-feed poller, the
TTL sweeper and hit-count flushing.

Replicas converge through ``cache_changes``: each polls ``seq > last_seq`` every
``sync_interval_s`` and applies puts (fetching the row and its vector) and deletes.
Its own writes are applied at once and skipped when they come back from the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from cache.adaptive import retained_until
from cache.docs import Document
from cache.errors import CacheUnavailable, SpaceChanged
from cache.memindex import EntryMeta, MemIndex
from cache.normalize import exact_key
from cache.policy import CategoryPolicy
from cache.schema import OP_PUT, cache_entries
from cache.snapshot import LIVE_CHUNK, Loader
from cache.types import CacheCounters, NewEntry

if TYPE_CHECKING:
    from cache.semantic_cache import SemanticCache

log = logging.getLogger(__name__)
E = cache_entries.c
BATCH = 256
# Replicas read the change feed every sync interval; one cut off from the store for longer
# than this must restart (it would miss deletes that were pruned meanwhile).
CHANGE_RETENTION_S = 86_400.0
ROW_OVERHEAD = 256  # metadata columns and index entries, roughly, for the bytes figure
_Item = tuple[NewEntry, CategoryPolicy, float]


class Background:
    def __init__(
        self, cache: SemanticCache, queue_size: int, sync_interval_s: float, sweep_interval_s: float
    ) -> None:
        self.cache = cache
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self.sync_interval_s, self.sweep_interval_s = sync_interval_s, sweep_interval_s
        self.policies: dict[str, CategoryPolicy] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.poll_lock = asyncio.Lock()
        self.closing = False
        self.available = True
        self.submitted = self.dropped_full = self.dropped_store = self.store_errors = 0
        # Items taken off the queue and finished (written or dropped), in queue order;
        # drain() waits for the count the queue had reached when it was called.
        self.processed = 0
        self._drain_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._writer(), name="cachegate-writer"),
            asyncio.create_task(self._poller(), name="cachegate-sync"),
        ]

    async def stop(self) -> None:
        self.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=10)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self._finished(0)
        for _, waiter in self._drain_waiters:  # the writer is gone: nothing more to wait for
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters = []

    def enqueue(self, entry: NewEntry, policy: CategoryPolicy, now: float) -> bool:
        if self.closing:
            return False
        try:
            self.queue.put_nowait((entry, policy, now))
        except asyncio.QueueFull:
            self.dropped_full += 1
            return False
        self.submitted += 1
        return True

    async def drain(self) -> None:
        """Waits until every item enqueued before the call is written or dropped (later
        ones need not be: under steady traffic the queue may never be empty)."""
        target = self.submitted
        if self.processed >= target or self.closing:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append((target, waiter))
        await waiter

    def _finished(self, count: int) -> None:
        self.processed += count
        ready = [w for w in self._drain_waiters if w[0] <= self.processed]
        self._drain_waiters = [w for w in self._drain_waiters if w[0] > self.processed]
        for _, waiter in ready:
            if not waiter.done():
                waiter.set_result(None)

    async def flush(self) -> None:
        await self.queue.join()
        try:
            await self.flush_hits()
            await self.poll()
        except CacheUnavailable as exc:
            self.store_failed(exc)

    def store_failed(self, exc: CacheUnavailable) -> None:
        self.store_errors += 1
        if self.available:
            log.warning("cache store unavailable, serving from memory: %s", exc)
        self.available = False

    def store_ok(self) -> None:
        if not self.available:
            log.warning("cache store reachable again")
        self.available = True

    def counters(self, entries: int, capacity: int, space_current: bool) -> CacheCounters:
        return CacheCounters(
            entries=entries,
            submitted=self.submitted,
            dropped_queue_full=self.dropped_full,
            dropped_store_error=self.dropped_store,
            store_errors=self.store_errors,
            store_available=self.available,
            last_seq=self.cache.last_seq,
            index_capacity=capacity,
            space_current=space_current,
        )

    # -- writer -------------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                written = await self._write(batch)
            except SpaceChanged as exc:
                self.dropped_store += len(batch)
                self.cache.lose_space(str(exc))
                written = None
            except CacheUnavailable as exc:
                self.dropped_store += len(batch)
                self.store_failed(exc)
                written = None
            try:
                if written is not None:
                    await self._enforce_quotas(written)
                    self.store_ok()
            except CacheUnavailable as exc:
                self.store_failed(exc)  # the next batch of the category evicts again
            finally:
                for _ in batch:
                    self.queue.task_done()
                self._finished(len(batch))

    async def _write(self, batch: list[_Item]) -> dict[str, list[int]]:
        """Stores a batch and adds it to memory; returns the new ids by category."""
        cache = self.cache
        pairs: list[tuple[NewEntry, dict[str, Any]]] = []
        for entry, policy, now in batch:
            try:
                pairs.append((entry, _row(entry, policy, now, cache.dim)))
            except (TypeError, ValueError) as exc:  # a response json cannot encode
                log.error("cache entry dropped, response not JSON-serialisable: %s", exc)
                self.dropped_store += 1
                continue
            self.policies[entry.category] = policy
        # Under the poll lock: a delete of these ids arriving from the feed (another
        # replica acting on them) cannot be applied before they are in memory. A flush
        # made since an entry was asked drops it here, just before the insert.
        async with self.poll_lock:
            rows = [row for entry, row in pairs if not cache.covered_by_flush(entry)]
            if not rows:
                return {}
            return await self._insert_and_apply(rows)

    async def _insert_and_apply(self, rows: list[dict[str, Any]]) -> dict[str, list[int]]:
        cache = self.cache
        ids = await cache.store.insert(rows, cache.clock())
        metas, docs = [], []
        for eid, row in zip(ids, rows, strict=True):
            metas.append(
                EntryMeta(
                    entry_id=eid,
                    tenant=sys.intern(row["tenant"]),
                    model_alias=sys.intern(row["model_alias"]),
                    fingerprint=sys.intern(row["fingerprint"]),
                    category=sys.intern(row["category"]),
                    tier=sys.intern(row["tier"]),
                    exact_hash=row["exact_hash"],
                    created_at=row["created_at"],
                    expires_at=row["expires_at"],
                    nbytes=row["nbytes"],
                )
            )
            docs.append(Document.from_row(_RowView(eid, row)))
        vecs = np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
        await Loader(cache.store, cache.index, cache._executor).add(metas, vecs, LIVE_CHUNK)
        for doc in docs:
            cache.docs.put(doc)
        written: dict[str, list[int]] = {}
        for eid, row in zip(ids, rows, strict=True):
            written.setdefault(row["category"], []).append(eid)
        return written

    async def _enforce_quotas(self, written: dict[str, list[int]]) -> None:
        if not written:
            return
        cache = self.cache
        await self.flush_hits()  # eviction orders by hit counts and times
        for category, fresh in sorted(written.items()):
            p = self.policies[category]
            gone = await cache.store.evict(
                category, p.max_entries, p.eviction, cache.clock(), protect=fresh
            )
            await cache.forget(gone, cache.evictions)

    # -- poller -------------------------------------------------------------------------
    async def _poller(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_interval_s
        while self.cache.serving:
            await asyncio.sleep(self.sync_interval_s)
            try:
                await self.poll()
                if not self.cache.serving:
                    return
                await self.flush_hits()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.sweep_interval_s
                    await self.sweep()
                self.store_ok()
            except CacheUnavailable as exc:
                self.store_failed(exc)

    async def poll(self) -> int:
        """Applies changes made since ``last_seq`` (by any replica); returns how many."""
        cache = self.cache
        async with self.poll_lock:
            applied = 0
            while True:
                changes = await cache.store.changes_since(cache.last_seq)
                if not changes:
                    return applied
                # Read after the changes: a replica adopting another embedder commits its
                # space record before any change it makes, so a change of its is never
                # applied here as if its vectors were this cache's.
                if not await cache.check_space():
                    return applied
                puts = [e for _, e, op in changes if op == OP_PUT and e not in cache.index.meta]
                dels = [e for _, e, op in changes if op != OP_PUT]
                rows = await cache.store.live_rows(puts, cache.clock(), vectors=True)
                loader = Loader(cache.store, cache.index, cache._executor)
                await loader.add_rows(rows, LIVE_CHUNK)
                await cache.forget(dels, None)
                cache.last_seq = changes[-1][0]
                applied += len(changes)

    async def flush_hits(self) -> None:
        pending, self.cache._pending_hits = self.cache._pending_hits, {}
        try:
            await self.cache.store.add_hits(pending)
        except CacheUnavailable:
            # Hit statistics are best effort; keep them for the next attempt.
            for eid, (n, at) in pending.items():
                m, _ = self.cache._pending_hits.get(eid, (0, at))
                self.cache._pending_hits[eid] = (n + m, at)
            raise

    async def sweep(self) -> int:
        """Removes expired entries from memory, then from the store; returns how many.

        An entry of a category whose policy lets load adaptation stretch its TTL
        (``ttl_max_factor`` > 1) is kept until TTL × that factor after it was stored,
        so that a stretched lookup can still serve it (stale-while-overloaded)."""
        cache = self.cache
        now = cache.clock()
        factors = {c: p.ttl_max_factor for c, p in self.policies.items() if p.ttl_max_factor > 1}
        local = await cache.on_index(_expired_beyond_stretch, cache.index, now, factors)
        await cache.forget(local, cache.expirations)
        gone = await cache.store.mark_deleted(
            sa.and_(E.expires_at <= now, sa.not_(_retained(factors, now))), "expired", now
        )
        await cache.forget(gone, cache.expirations)
        await cache.store.prune_changes(now - CHANGE_RETENTION_S)
        # Rows deleted for any reason since the last sweep (expiry, eviction, feedback,
        # another replica's deletes) leave the store for good.
        await cache.store.purge_deleted()
        return len(set(local) | set(gone))


def _expired_beyond_stretch(index: MemIndex, now: float, factors: dict[str, float]) -> list[int]:
    # Entries still retained leave the expiry heap here; the store sweep below deletes
    # them once their stretch is over and ``forget`` then drops them from memory.
    out = []
    for eid in index.expired(now):
        m = index.meta[eid]
        if now >= retained_until(m.created_at, m.expires_at, factors.get(m.category, 1.0)):
            out.append(eid)
    return out


def _retained(factors: dict[str, float], now: float) -> sa.ColumnElement[bool]:
    kept = [
        sa.and_(E.category == c, E.created_at + (E.expires_at - E.created_at) * f > now)
        for c, f in sorted(factors.items())
    ]
    return sa.or_(sa.false(), *kept)


def _row(entry: NewEntry, policy: CategoryPolicy, now: float, dim: int) -> dict[str, Any]:
    v = np.asarray(entry.vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v)) or 1.0
    answer = json.dumps(entry.response, separators=(",", ":"), ensure_ascii=False)
    s = entry.scope
    return {
        "tenant": s.tenant,
        "model_alias": s.model_alias,
        "fingerprint": s.fingerprint,
        "category": entry.category,
        "exact_hash": exact_key(s, entry.text),
        "request_text": entry.text,
        "answer": answer,
        "backend": entry.backend,
        "tier": entry.tier,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "vector": (v / norm).astype(np.float32).tobytes(),
        "nbytes": len(entry.text.encode()) + len(answer.encode()) + 4 * dim + ROW_OVERHEAD,
        "created_at": now,
        "expires_at": now + policy.ttl_seconds,
        "hit_count": 0,
        "deleted": False,
        "utility": 0.5,
        "example_ok": entry.example_ok,
    }


class _RowView:
    """Attribute access over a just-inserted row dict (for Document.from_row)."""

    def __init__(self, eid: int, row: dict[str, Any]) -> None:
        self.id = eid
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return self._row[name]
