"""The category-aware semantic cache: exact tier, scoped HNSW tier, SQL documents.

Threading: every hnswlib call and every change to the in-memory metadata runs on one
dedicated thread (``_on_index``), so graph mutations never overlap a query; the event
loop only awaits it. SQL runs on the async engine. The equivalence checker runs in the
default thread pool, as it may be a model.

Fails open: lookups never raise (a store error is a miss, or a hit served from the
in-memory document cache), ``submit`` never blocks or raises for the store, and writes
that cannot reach the store are dropped and counted. Admin calls raise
:class:`CacheUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import sqlalchemy as sa

from cache.adaptive import stale_servable
from cache.docs import DocCache, Document
from cache.errors import CacheError, CacheUnavailable, EntryNotFound
from cache.memindex import EntryMeta, MemIndex
from cache.migrate import migrate_async, migrate_connection
from cache.normalize import exact_key
from cache.policy import CategoryPolicy
from cache.schema import cache_entries
from cache.snapshot import Loader, LoadReport, SnapshotTiming, save_snapshot
from cache.store import DocumentStore, answer_text, is_memory, make_engine
from cache.sync import Background
from cache.types import (
    CacheCounters,
    CacheHit,
    CacheScope,
    CategoryStats,
    EntryInfo,
    Neighbour,
    NewEntry,
    Tier,
    Vector,
)
from cache.vector_space import META_KEY as SPACE_KEY
from cache.vector_space import OnSpaceChange, Reembed, VectorSpace
from cache.vector_space import settle as settle_space

log = logging.getLogger(__name__)
E = cache_entries.c
_T = TypeVar("_T")


class Verdict(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def equivalent(self) -> bool: ...


class Checker(Protocol):
    """What ``cache.EquivalenceChecker`` provides."""

    def check(
        self,
        query_text: str,
        query_vec: Vector,
        cand_text: str,
        cand_vec: Vector,
        threshold: float | None = None,
    ) -> Verdict: ...


class SemanticCache:
    """Build with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        store: DocumentStore,
        *,
        dim: int,
        clock: Callable[[], float],
        snapshot_dir: Path | None,
        snapshot_interval_s: float,
        checker: Checker | None,
        write_queue_size: int,
        sync_interval_s: float,
        sweep_interval_s: float,
        candidates: int,
        doc_cache_size: int,
    ) -> None:
        self.store, self.dim, self.clock, self.checker = store, dim, clock, checker
        self.snapshot_dir = snapshot_dir
        self.snapshot_interval_s = snapshot_interval_s
        self.last_snapshot: SnapshotTiming | None = None
        self.load_report: LoadReport | None = None  # set when started from a snapshot
        self.snapshot_errors = 0
        # One save at a time (periodic, explicit, at close): they share ``<dir>.tmp``.
        self._snapshot_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._snapshot_task: asyncio.Task[None] | None = None
        self.candidates = candidates
        self.index = MemIndex(dim)
        self.docs = DocCache(doc_cache_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cachegate-index")
        self._pending_hits: dict[int, tuple[int, float]] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.misses: Counter[tuple[str, str]] = Counter()
        self.evictions: Counter[tuple[str, str]] = Counter()
        self.expirations: Counter[tuple[str, str]] = Counter()
        #: Equivalence verdicts on semantic candidates, by :func:`verdict_outcome`.
        self.verdicts: Counter[str] = Counter()
        self.bg = Background(self, write_queue_size, sync_interval_s, sweep_interval_s)
        self.last_seq = 0
        #: Why this cache stopped serving: another replica gave the store another
        #: embedder's space (see :meth:`check_space`); ``None`` while it serves.
        self.space_lost: str | None = None
        #: The store's vector-space generation (raised by a flush or re-embedding).
        self.space_generation = 0
        #: Flushes on this replica so far, and the latest ones' (number, category,
        #: tenant): an answer to a request looked up before a flush that covers it
        #: (a request in flight during the flush) is not stored after it.
        self.flushes = 0
        self.flush_drain_s = 5.0  # longest wait for the writer's batch under way
        self._flush_marks: deque[tuple[int, str | None, str | None]] = deque(maxlen=1024)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        dim: int = 384,
        clock: Callable[[], float] = time.time,
        snapshot_dir: Path | None = None,
        snapshot_interval_s: float = 300.0,
        checker: Checker | None = None,
        write_queue_size: int = 10_000,
        sync_interval_s: float = 0.25,
        sweep_interval_s: float = 5.0,
        candidates: int = 5,
        doc_cache_size: int = 10_000,
        auto_migrate: bool = True,
        space: VectorSpace | None = None,
        on_space_change: OnSpaceChange = "refuse",
        reembed: Reembed | None = None,
    ) -> SemanticCache:
        """Migrates (unless told not to), loads the index and starts the background tasks.

        ``url``: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://...``;
        ``clock``: epoch seconds, injectable for TTL tests; ``snapshot_dir``: where
        :meth:`close`/:meth:`snapshot` save the index (``None``: rebuild from SQL);
        ``snapshot_interval_s``: with a ``snapshot_dir``, also save every this many
        seconds, so a restart after a crash reads only the entries written since the
        last save (0: only at close);
        ``checker``: equivalence check run on semantic candidates; ``candidates``: top-k
        semantic candidates checked per lookup; ``doc_cache_size``: documents held in
        memory (hot hits skip SQL and survive a store outage); ``space``: the embedder
        whose vectors will be stored and looked up, checked against the one that wrote
        the store (:mod:`cache.vector_space`; ``None`` skips the check), and
        ``on_space_change``: ``refuse``, ``flush`` or ``reembed`` (with ``reembed``, the
        new embedder's batch function) when they differ.

        Raises :class:`CacheUnavailable` when the store cannot be reached at start-up,
        :class:`SpaceMismatch` for a store written by another embedder (with ``refuse``),
        and :class:`CacheError` for a bad argument or a store holding vectors of another
        dimension.
        """
        if on_space_change not in ("refuse", "flush", "reembed"):
            raise CacheError(
                f"on_space_change must be refuse, flush or reembed, got {on_space_change!r}"
            )
        for name, value in (
            ("dim", dim),
            ("write_queue_size", write_queue_size),
            ("sync_interval_s", sync_interval_s),
            ("sweep_interval_s", sweep_interval_s),
            ("candidates", candidates),
            ("doc_cache_size", doc_cache_size),
        ):
            if not value > 0:
                raise CacheError(f"{name} must be > 0, got {value!r}")
        if not 0 <= snapshot_interval_s < float("inf"):
            raise CacheError(f"snapshot_interval_s must be >= 0, got {snapshot_interval_s!r}")
        engine = make_engine(url)
        try:
            # Probe on this loop first: a connection failing inside the migration's
            # short-lived loop would leave aiosqlite's thread posting to a closed loop.
            async with engine.connect():
                pass
            if auto_migrate and is_memory(url):
                async with engine.begin() as conn:
                    await migrate_connection(conn, url)
            elif auto_migrate:
                await migrate_async(url)
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            await engine.dispose()
            raise CacheUnavailable(f"cannot reach or migrate cache store: {exc}") from exc
        store = DocumentStore(engine)
        generation = 0
        if space is not None:
            try:
                settled = await settle_space(store, space, on_space_change, clock(), reembed)
            except BaseException:
                await engine.dispose()
                raise
            store.guard_meta(SPACE_KEY, settled.record)
            generation = settled.generation
        self = cls(
            store,
            dim=dim,
            clock=clock,
            snapshot_dir=snapshot_dir,
            snapshot_interval_s=snapshot_interval_s,
            checker=checker,
            write_queue_size=write_queue_size,
            sync_interval_s=sync_interval_s,
            sweep_interval_s=sweep_interval_s,
            candidates=candidates,
            doc_cache_size=doc_cache_size,
        )
        self.space_generation = generation
        try:
            await self._load()
        except BaseException:
            await self._shutdown_resources()
            raise
        self.bg.start()
        if snapshot_dir is not None and snapshot_interval_s > 0:
            self._snapshot_task = asyncio.create_task(
                self._snapshot_loop(snapshot_interval_s), name="cachegate-snapshot"
            )
        return self

    async def _load(self) -> None:
        started = time.monotonic()
        self.last_seq = await self.store.max_seq()
        now = self.clock()
        loader = Loader(self.store, self.index, self._executor)
        count = None
        if self.snapshot_dir is not None:
            self.load_report = await loader.from_snapshot(
                self.snapshot_dir, now, self.space_generation
            )
            count = None if self.load_report is None else len(self.index.meta)
        source = "snapshot"
        if count is None:
            source, count = "rebuild", await loader.rebuild(now)
        log.info(
            "cache loaded %d entries by %s in %.2fs (seq %d)",
            count,
            source,
            time.monotonic() - started,
            self.last_seq,
        )

    async def close(self) -> None:
        """Writes what is queued, stops the background tasks, snapshots, disposes."""
        self._stopping.set()
        if self._snapshot_task is not None:
            # Awaited, not cancelled: a save cut off mid-way would leave its worker thread
            # writing ``<dir>.tmp`` while the final save below starts over in it.
            await self._snapshot_task
        await self.bg.stop()
        if self.snapshot_dir is not None:
            try:
                await self.snapshot()
            except OSError as exc:  # the older snapshot (or SQL) serves the next start
                self.snapshot_errors += 1
                log.error("cache snapshot at close to %s failed: %s", self.snapshot_dir, exc)
        await self._shutdown_resources()

    async def _shutdown_resources(self) -> None:
        await self.store.close()
        self._executor.shutdown(wait=True)

    async def snapshot(self) -> SnapshotTiming | None:
        """Saves the index to ``snapshot_dir`` atomically (``None`` without one).

        Lookups wait only while the index thread forks the process that writes it
        (``SnapshotTiming.blocked_s``; see ``cache.snapshot``). Raises OSError when it
        could not be written (the previous snapshot stays)."""
        if self.snapshot_dir is None:
            return None
        async with self._snapshot_lock:
            timing = await save_snapshot(
                self.index,
                self.snapshot_dir,
                self._executor,
                self.last_seq,
                self.clock(),
                generation=self.space_generation,
            )
        self.last_snapshot = timing
        log.info(
            "cache snapshot: %d entries, index held %.2fs, %.2fs in all",
            timing.entries,
            timing.blocked_s,
            timing.total_s,
        )
        return timing

    async def _snapshot_loop(self, interval_s: float) -> None:
        """Saves every ``interval_s`` until :meth:`close`; a failed save is logged and
        retried at the next interval (the previous snapshot stays usable)."""
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), interval_s)
                return
            except TimeoutError:
                pass
            try:
                await self.snapshot()
            except OSError as exc:
                self.snapshot_errors += 1
                log.error("cache snapshot to %s failed: %s", self.snapshot_dir, exc)

    async def on_index(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- request path -------------------------------------------------------------------
    async def lookup(
        self,
        scope: CacheScope,
        text: str,
        vector: Vector,
        category: str,
        policy: CategoryPolicy,
        *,
        max_age_s: float | None = None,
    ) -> CacheHit | None:
        """The best equivalent stored answer in ``scope``, or ``None``. Never raises for
        the store; a store outage is a miss unless the document is held in memory.
        ``max_age_s``: only answers stored at most that long ago (the client's
        ``Cache-Control: max-age``)."""
        if not policy.enabled or not self.serving:
            return None
        vec = self._vector(vector)
        now = self.clock()
        key = exact_key(scope, text)
        group = (scope.tenant, scope.model_alias, scope.fingerprint)
        since = -math.inf if max_age_s is None else now - max_age_s
        exact, cands, cand_vecs = await self.on_index(
            self._probe, key, group, vec, policy.similarity_threshold, now, category, policy, since
        )
        hit = await self._choose(cands, cand_vecs, exact, text, vec, policy) if cands else None
        stat_key = (category, scope.tenant)
        if hit is None:
            self.misses[stat_key] += 1
            return None
        doc, similarity = hit
        return self._hit(doc, similarity, exact, now, stat_key)

    def find_exact(self, scope: CacheScope, text: str) -> int | None:
        """The id of the live entry stored under ``scope`` for this text, if any, without
        counting a lookup or a hit (for feedback, which is not traffic)."""
        eid = self.index.exact.get(exact_key(scope, text))
        m = self.index.meta.get(eid) if eid is not None else None
        return m.entry_id if m is not None and m.expires_at > self.clock() else None

    async def exact_lookup(
        self,
        scope: CacheScope,
        text: str,
        policy_for: Callable[[str], CategoryPolicy | None],
        *,
        stored_after: float = 0.0,
        max_age_s: float | None = None,
    ) -> CacheHit | None:
        """The exact tier alone, before anything is embedded or classified: the entry
        stored under ``scope`` for this normalised text, served under the (effective)
        policy of the category it was stored in, which ``policy_for`` gives (``None``:
        that category may not serve this request). Entries stored before
        ``stored_after`` (when the categories last changed) are left to the full path,
        which classifies the request anew. ``max_age_s`` as for :meth:`lookup`.

        ``None`` when there is none or its policy would not serve it now; the caller then
        goes the whole way (embed, classify, :meth:`lookup`), which counts the miss. An
        exact repeat thus costs a hash and a dict probe instead of an embedding."""
        if not self.serving:
            return None
        now = self.clock()
        # Plain dict reads: atomic under the GIL, so no hop to the index thread (only
        # hnswlib calls must stay on it).
        eid = self.index.exact.get(exact_key(scope, text))
        m = self.index.meta.get(eid) if eid is not None else None
        if m is None or m.created_at < stored_after:
            return None
        if max_age_s is not None and m.created_at < now - max_age_s:
            return None
        policy = policy_for(m.category)
        if (
            policy is None
            or not policy.enabled
            or not self._servable(m, now, m.category, policy.ttl_stretch)
        ):
            return None
        doc = (await self._documents([m.entry_id])).get(m.entry_id)
        if doc is None:  # deleted meanwhile, or the store is down and it is not in memory
            return None
        return self._hit(doc, 1.0, True, now, (m.category, scope.tenant))

    def _hit(
        self, doc: Document, similarity: float, exact: bool, now: float, stat_key: tuple[str, str]
    ) -> CacheHit:
        self.hits[stat_key] += 1
        self._note_hit(doc.entry_id, now)
        return CacheHit(
            entry_id=doc.entry_id,
            similarity=similarity,
            exact=exact,
            category=doc.category,
            response=json.loads(doc.answer),
            backend=doc.backend,
            tier=doc.tier,
            prompt_tokens=doc.prompt_tokens,
            completion_tokens=doc.completion_tokens,
            created_at=doc.created_at,
        )

    def _probe(
        self,
        key: str,
        group: tuple[str, str, str],
        vec: Vector,
        floor: float,
        now: float,
        category: str,
        policy: CategoryPolicy,
        since: float,
    ) -> tuple[bool, list[tuple[int, float]], Vector]:
        """On the index thread: (exact match?, candidates with their similarity, and the
        candidates' vectors as the index holds them), among entries stored at ``since``
        or later."""
        # Under a TTL stretch (load adaptation), entries of the lookup's own category
        # that expired less than (stretch - 1) × TTL ago may still be served; the index
        # is asked as of that earlier time and the rest filtered here, per entry.
        stretch = policy.ttl_stretch
        seen_at = now - (stretch - 1.0) * policy.ttl_seconds
        meta = self.index.meta
        m = self.index.exact_match(key, seen_at)
        if m is not None and m.created_at >= since and self._servable(m, now, category, stretch):
            cands = [(m.entry_id, 1.0)]
            return True, cands, self.index.vectors(cands)
        cands = self.index.search_group(group, vec, self.candidates, floor, seen_at)
        if stretch > 1.0:
            cands = [c for c in cands if self._servable(meta[c[0]], now, category, stretch)]
        if since > -math.inf:  # the client's max-age: older answers are not candidates
            cands = [c for c in cands if meta[c[0]].created_at >= since]
        # The check reads these, not the documents' stored vectors: a document fetched
        # from SQL may already hold another embedder's vector (a re-embedding under way
        # on another replica, before this one's next poll stops it), while the index
        # holds the vectors it searched with.
        return False, cands, self.index.vectors(cands)

    @staticmethod
    def _servable(m: EntryMeta, now: float, category: str, stretch: float) -> bool:
        if m.expires_at > now:
            return True
        # Never another category's entry: its own policy may not allow stale answers.
        return m.category == category and stale_servable(m.created_at, m.expires_at, now, stretch)

    async def _choose(
        self,
        cands: list[tuple[int, float]],
        cand_vecs: Vector,
        exact: bool,
        text: str,
        vec: Vector,
        policy: CategoryPolicy,
    ) -> tuple[Document, float] | None:
        docs = await self._documents([eid for eid, _ in cands])
        found = [
            (docs[eid], sim, cand_vecs[row]) for row, (eid, sim) in enumerate(cands) if eid in docs
        ]
        if not found:
            return None
        if exact or self.checker is None:
            return found[0][0], found[0][1]
        checker, threshold = self.checker, policy.equivalence_threshold

        def judge() -> tuple[tuple[Document, float] | None, list[str]]:
            best: tuple[float, Document, float] | None = None
            outcomes = []
            for doc, sim, cand_vec in found:
                try:
                    verdict = checker.check(text, vec, doc.request_text, cand_vec, threshold)
                except CacheError as exc:  # e.g. a stored vector the checker refuses
                    log.warning("equivalence check failed on entry %d: %s", doc.entry_id, exc)
                    continue
                outcomes.append(verdict_outcome(verdict))
                if verdict.equivalent and (best is None or verdict.score > best[0]):
                    best = (verdict.score, doc, sim)
            return (None if best is None else (best[1], best[2])), outcomes

        chosen, outcomes = await asyncio.to_thread(judge)
        self.verdicts.update(outcomes)  # counted here, on the loop: judges run in parallel
        return chosen

    async def _documents(self, ids: list[int]) -> dict[int, Document]:
        out = {eid: d for eid in ids if (d := self.docs.get(eid)) is not None}
        missing = [eid for eid in ids if eid not in out]
        if missing:
            try:
                rows = await self.store.documents(missing)
            except CacheUnavailable as exc:
                self.bg.store_failed(exc)
                return out
            for eid, row in rows.items():
                out[eid] = self.docs.put(Document.from_row(row))
        return out

    def _note_hit(self, entry_id: int, now: float) -> None:
        m = self.index.meta.get(entry_id)
        if m is not None:
            m.hit_count += 1
            m.last_hit_at = now
        n, _ = self._pending_hits.get(entry_id, (0, now))
        self._pending_hits[entry_id] = (n + 1, now)

    def submit(self, entry: NewEntry, policy: CategoryPolicy) -> bool:
        """Queues ``entry`` for the background writer; ``False`` when it was dropped
        (policy disabled, queue full, cache closing)."""
        self._vector(entry.vector)
        if not policy.enabled or not self.serving or self.covered_by_flush(entry):
            return False
        return self.bg.enqueue(entry, policy, self.clock())

    def covered_by_flush(self, entry: NewEntry) -> bool:
        """Whether a flush made on this replica after ``entry``'s request was looked up
        covers its tenant and category: then it is not stored (checked at submit and
        again by the writer, just before the insert)."""
        asked = entry.asked_at_flush
        if asked is None or asked >= self.flushes:
            return False
        if asked < self.flushes - len(self._flush_marks):
            return True  # older than the marks kept: assume covered
        return any(
            n > asked
            and category in (None, entry.category)
            and tenant in (None, entry.scope.tenant)
            for n, category, tenant in self._flush_marks
        )

    @property
    def serving(self) -> bool:
        """``False`` once the store's vector space is no longer this cache's."""
        return self.space_lost is None

    async def check_space(self) -> bool:
        """Whether the store still holds the vector space this cache opened with.

        Another replica started with another embedder and ``on_embedder_change: flush``
        or ``reembed`` records its own space in the store. From then on this replica's
        vectors and the store's mean nothing to each other, so it stops serving: lookups
        miss, nothing is written (the store refuses its inserts anyway), and
        :attr:`space_lost` says why. Checked by every poll of the change feed that finds
        changes (before applying them) and, in the store, by every insert. Raises
        :class:`CacheUnavailable`."""
        if self.space_lost is not None:
            return False
        if await self.store.guard_holds():
            return True
        self.lose_space("the store's vector-space record changed")
        return False

    def lose_space(self, cause: str) -> None:
        if self.space_lost is not None:
            return
        self.space_lost = (
            f"{cause}: another replica gave the cache store another embedder's vectors; "
            "this replica no longer reads or writes the cache (restart it with that embedder)"
        )
        log.error("cache out of service: %s", self.space_lost)

    async def flush(self) -> None:
        """Waits until everything submitted so far is written (or dropped) and applied,
        and applies other replicas' changes committed before the call."""
        await self.bg.flush()

    async def sweep(self) -> int:
        """Removes expired entries now (the background sweeper runs every
        ``sweep_interval_s``); returns how many. Raises CacheUnavailable."""
        return await self.bg.sweep()

    async def sync(self) -> int:
        """Applies the change feed now; returns how many changes. Raises CacheUnavailable."""
        return await self.bg.poll()

    def _vector(self, vector: Vector) -> Vector:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise CacheError(f"vector must have dim {self.dim}, got {v.shape[0]}")
        return v

    async def neighbours(
        self,
        tenant: str,
        vector: Vector,
        k: int,
        floor: float,
        tier: Tier | None = "large",
        model_alias: str | None = None,
    ) -> list[Neighbour]:
        """Up to ``k`` live entries of ``tenant`` most similar to ``vector`` (cosine >=
        ``floor``), for in-context examples. Entries with bad feedback are deleted, so
        never returned. Returns ``[]`` when the store is unreachable and nothing is held,
        and when the cache no longer serves (:attr:`serving`)."""
        vec = self._vector(vector)
        if not self.serving:
            return []
        pairs = await self.on_index(
            self.index.search_tenant, tenant, vec, k, floor, self.clock(), tier, model_alias
        )
        docs = await self._documents([eid for eid, _ in pairs])
        return [
            Neighbour(
                entry_id=eid,
                similarity=sim,
                request_text=d.request_text,
                answer_text=answer_text(d.answer),
                tier=d.tier,
                utility=d.utility,
                model_alias=d.model_alias,
                example_ok=d.example_ok,
            )
            for eid, sim in pairs
            if (d := docs.get(eid)) is not None
        ]

    # -- removal (also used by the background tasks) -----------------------------------------
    async def forget(self, ids: list[int], counter: Counter[tuple[str, str]] | None) -> None:
        """Drops ids from memory (after SQL says they are gone)."""
        if not ids:
            return
        gone: list[EntryMeta] = await self.on_index(self.index.remove, ids)
        for eid in ids:
            self.docs.drop(eid)
            self._pending_hits.pop(eid, None)
        if counter is not None:
            for m in gone:
                counter[(m.category, m.tenant)] += 1

    # -- admin --------------------------------------------------------------------------
    async def delete(self, entry_id: int) -> None:
        """Deletes one entry everywhere. Raises EntryNotFound / CacheUnavailable."""
        ids = await self.store.mark_deleted(E.id == entry_id, "admin", self.clock())
        if not ids:
            raise EntryNotFound(f"no live cache entry {entry_id}")
        await self.forget(ids, None)

    async def flush_entries(
        self, *, category: str | None = None, tenant: str | None = None, dry_run: bool = False
    ) -> int:
        """Deletes all entries of a category and/or tenant (all when neither is given);
        returns how many were (or, with ``dry_run``, would be) deleted."""
        where = _filter(category, tenant, None)
        if dry_run:
            return await self.store.count(where)
        # The mark makes answers to requests looked up before now not stored: refused at
        # submit, or dropped by the writer if already queued.
        self.flushes += 1
        self._flush_marks.append((self.flushes, category, tenant))
        with contextlib.suppress(TimeoutError):
            # Only a batch whose insert is already under way can still land; the writer
            # drops the covered entries it has not inserted. Bounded: with the store
            # unreachable each batch takes its connect timeout, and the delete below
            # then fails (503) anyway.
            await asyncio.wait_for(self.bg.drain(), self.flush_drain_s)
        ids = await self.store.mark_deleted(where, "flush", self.clock())
        await self.forget(ids, None)
        # At once, not at the next sweep: a flush (a tenant's deletion among them) means
        # its prompts and answers are gone from disk when it returns.
        await self.store.purge_deleted()
        return len(ids)

    async def record_feedback(self, entry_id: int, rating: float) -> bool:
        """Stores a rating in [-1, 1]; a negative one removes the entry (returns True)."""
        if not -1.0 <= rating <= 1.0:
            raise CacheError(f"rating must be in [-1, 1], got {rating!r}")
        if not await self.store.update_fields(entry_id, {"feedback_score": rating}):
            raise EntryNotFound(f"no live cache entry {entry_id}")
        if rating >= 0:
            return False
        ids = await self.store.mark_deleted(E.id == entry_id, "feedback", self.clock())
        await self.forget(ids, None)
        return True

    async def set_utility(self, entry_id: int, utility: float) -> None:
        """Sets the router's learned usefulness of an entry as an example, in [0, 1]."""
        if not 0.0 <= utility <= 1.0:
            raise CacheError(f"utility must be in [0, 1], got {utility!r}")
        if not await self.store.update_fields(entry_id, {"utility": utility}):
            raise EntryNotFound(f"no live cache entry {entry_id}")
        self.docs.drop(entry_id)

    async def list_entries(
        self,
        *,
        category: str | None = None,
        tenant: str | None = None,
        text_contains: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[EntryInfo]:
        if offset < 0 or not 1 <= limit <= 1000:
            raise CacheError("offset must be >= 0 and limit in [1, 1000]")
        return await self.store.list_entries(
            _filter(category, tenant, text_contains), offset, limit
        )

    async def stats(self) -> list[CategoryStats]:
        """Per (category, tenant): live entries and bytes now, counters since start."""
        live = await self.on_index(_live_counts, self.index)
        keys = set(live) | set(self.hits) | set(self.misses) | set(self.evictions)
        keys |= set(self.expirations)
        return [
            CategoryStats(
                category=c,
                tenant=t,
                entries=live.get((c, t), (0, 0))[0],
                bytes=live.get((c, t), (0, 0))[1],
                hits=self.hits[(c, t)],
                misses=self.misses[(c, t)],
                evictions=self.evictions[(c, t)],
                expirations=self.expirations[(c, t)],
            )
            for c, t in sorted(keys)
        ]

    def counters(self) -> CacheCounters:
        capacity = sum(g.index.get_max_elements() for g in list(self.index.graphs.values()))
        counters = self.bg.counters(len(self.index.meta), capacity, self.serving)
        return replace(counters, verdicts=dict(self.verdicts))


def verdict_outcome(verdict: Verdict) -> str:
    """A verdict as a metric label: ``accepted``, ``identical``, ``below_threshold``, or
    ``veto_<kind>`` (``veto_number``, ``veto_entity``, ``veto_opposite`` ...)."""
    # ``reason`` is not part of the Checker protocol (a custom checker need not give one).
    reason = str(getattr(verdict, "reason", ""))
    if reason.startswith("hard_mismatch:"):
        return "veto_" + reason.removeprefix("hard_mismatch:")
    if reason == "identical":
        return "identical"
    return "accepted" if verdict.equivalent else "below_threshold"


def _live_counts(index: MemIndex) -> dict[tuple[str, str], tuple[int, int]]:
    return {key: (n, b) for key, (n, b) in index.totals.items() if n}


def _filter(category: str | None, tenant: str | None, text: str | None) -> sa.ColumnElement[bool]:
    conds: list[sa.ColumnElement[bool]] = [sa.true()]
    if category is not None:
        conds.append(E.category == category)
    if tenant is not None:
        conds.append(E.tenant == tenant)
    if text:
        conds.append(E.request_text.contains(text, autoescape=True))
    return sa.and_(*conds)
