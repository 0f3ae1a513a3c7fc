"""Scale benchmark of the semantic cache at one size: lookup latency (alone and under
concurrency), memory, snapshot write time and restart time.

    .venv/bin/python -m bench.cache_scale --n 1000000 --work /tmp/cs1m   # keeps the files
    .venv/bin/python -m bench.cache_scale --n 100000                      # temp dir

Prints one JSON object per phase. ``bench.scale`` runs it per size and tabulates.

**Vectors** (``--vectors real``, default): the product's embedder (all-MiniLM-L6-v2 int8,
384 dims) applied to the 61,825 real texts of ``../shared/data`` (QQP questions ``a`` then
``b``, then the labelled queries; cached by ``bench.embcache``). Entry ``i`` is text
``i mod 61,825`` with its vector plus Gaussian noise of sd 0.02 per dimension (seeded),
normalised: cosine ~0.93 to the text's vector, ~0.87 between two entries of one text, so
1M entries are 61,825 clusters of ~16 near-paraphrases on the real embedding manifold.
``--vectors random``: independent random unit vectors (fast, for tests).

**Scopes**: 4 tenants; per tenant half the entries share one fingerprint (a big group,
searched with filtered HNSW: 125k entries at 1M) and the rest are conversations of 20
entries (searched exactly).

**Fill** (honest but fast): rows are built by the writer's own ``cache.sync._row`` and
written by ``DocumentStore.bulk_insert`` (entries and their change-log rows, ids as SQLite
assigns them) in transactions of 5,000; then ``SemanticCache.open`` without a snapshot rebuilds the index
from SQL (the product's restart-by-rebuild path: ``add_items`` per 1,024 entries with the
product's M=16, ef_construction=100) and that time is reported as ``restart_rebuild``.
The write-behind path (``submit``) is measured separately on 2,000 entries.

**Lookups**: ``exact`` (stored text), ``semantic_big_group`` / ``semantic_small_group``
(a stored vector plus noise of sd 0.01, cosine ~0.98, other text), ``miss_big_group`` (a
random vector). ``hnsw_big_group`` is the index search alone, timed on the index thread
(no SQL, no queueing), wall clock and the thread's CPU time (``_cpu``): the figure issue
#8's 2 ms target is about. ``recall`` = share of semantic lookups whose hit is the very
entry perturbed. Concurrency: ``c`` tasks issue semantic lookups back to back; latency per
lookup and lookups/s.

**Phases**: SQL fill; restart by rebuild; lookups; concurrency; a snapshot taken while
lookups run (``blocked_s``: how long the index thread was held); then the cache is dropped
without ``close`` (a crash) and reopened from that snapshot (``restart_snapshot``, RSS per
entry); lookups, concurrency and a snapshot again; lookups while the write-behind writer
stores ``--writes`` entries; ``close``. ``--work DIR --from-snapshot`` starts at the
restart, from the files a previous run kept in ``DIR``. Each phase also reports the load
average and full garbage collections.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cache import CacheScope, CategoryPolicy, NewEntry, SemanticCache
from cache.memindex import EntryMeta, MemIndex
from cache.store import DocumentStore, make_engine
from cache.sync import _row

POLICY = CategoryPolicy(similarity_threshold=0.9, max_entries=10_000_000)
RESPONSE = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 400}}]}
ENTRY_NOISE = 0.02
QUERY_NOISE = 0.01
F32 = npt.NDArray[np.float32]


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def scope_of(i: int) -> CacheScope:
    tenant = f"t{i % 4}"
    j = i // 4
    fp = "shared" if j % 2 == 0 else f"conv{j // 20}"
    return CacheScope(tenant=tenant, model_alias="chat", fingerprint=fp)


def report(phase: str, **values: Any) -> None:
    print(json.dumps({"phase": phase, **values, "gc": GC.take()}), flush=True)


def pct(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "count": len(samples),
    }


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


class GcPauses:
    """Longest full (generation 2) collection since the last report: with 1M metadata
    objects alive a full collection walks all of them, a pause every lookup waits for."""

    def __init__(self) -> None:
        self.started = 0.0
        self.longest = 0.0
        self.count = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - self.started)

    def take(self) -> dict[str, float]:
        out = {"full_collections": self.count, "longest_ms": round(self.longest * 1000, 1)}
        self.longest, self.count = 0.0, 0
        return out


GC = GcPauses()


class Corpus:
    """Entry ``i``: text and vector, made on demand (1M vectors are 1.5 GB)."""

    def __init__(self, kind: str, dim: int) -> None:
        self.kind, self.dim = kind, dim
        if kind == "real":
            self.texts, self.base = real_texts_and_vectors()
            self.dim = self.base.shape[1]
        else:
            self.texts, self.base = [], np.zeros((0, dim), np.float32)

    def text(self, i: int) -> str:
        if self.kind == "real":
            t = self.texts[i % len(self.texts)]
            return t if i < len(self.texts) else f"{t} ({i // len(self.texts)})"
        return f"question number {i}"

    def vectors(self, start: int, stop: int) -> F32:
        """Rows ``start:stop``; the same for the same ``i`` whatever the slicing."""
        out = np.empty((stop - start, self.dim), np.float32)
        for i in range(start, stop):
            rng = np.random.default_rng(i)
            if self.kind == "real":
                v = self.base[i % len(self.base)] + rng.normal(scale=ENTRY_NOISE, size=self.dim)
            else:
                v = rng.normal(size=self.dim)
            out[i - start] = v
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def real_texts_and_vectors() -> tuple[list[str], F32]:
    from bench.embcache import SHARED_DATA, embed_texts

    with open(SHARED_DATA / "cache" / "qqp_dev.jsonl") as f:
        rows = [json.loads(line) for line in f]
    qqp = [r["a"] for r in rows] + [r["b"] for r in rows]
    with open(SHARED_DATA / "categories" / "labeled_queries_dev.jsonl") as f:
        labelled = [json.loads(line)["text"] for line in f if line.strip()]
    # Two lists, as the equivalence trainer and the classifier trainer embed them, so the
    # embedding cache is shared with them.
    vecs = np.concatenate([embed_texts(qqp), embed_texts(labelled)]).astype(np.float32)
    return qqp + labelled, vecs


async def bulk_fill(url: str, corpus: Corpus, n: int, now: float, batch: int = 5000) -> None:
    """Rows as the write-behind writer builds them, written by the product's insert."""
    engine = make_engine(url)
    from cache.migrate import migrate_async

    await migrate_async(url)
    store = DocumentStore(engine)
    t0 = time.monotonic()
    try:
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            vecs = corpus.vectors(start, stop)
            rows = [
                _row(
                    NewEntry(
                        scope=scope_of(i),
                        category="factual",
                        text=corpus.text(i),
                        vector=vecs[i - start],
                        response=RESPONSE,
                        backend="b",
                        tier="large",
                    ),
                    POLICY,
                    now,
                    corpus.dim,
                )
                for i in range(start, stop)
            ]
            ids = await store.bulk_insert(rows, now)
            if ids[0] != start + 1:  # lookups map entry i to id i + 1
                raise RuntimeError(f"bulk fill needs an empty store, got id {ids[0]}")
    finally:
        await store.close()
    dt = time.monotonic() - t0
    report("sql_fill", n=n, seconds=round(dt, 1), rows_per_s=round(n / dt), load=load_avg())


def _queries(corpus: Corpus, n: int, q: int, seed: int) -> list[tuple[int, F32, F32, F32]]:
    """``q`` draws of (entry, its vector, a paraphrase's vector, an unrelated vector)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, n, size=q).tolist():
        v = corpus.vectors(i, i + 1)[0]
        noisy = v + rng.normal(scale=QUERY_NOISE, size=corpus.dim).astype(np.float32)
        noisy /= np.linalg.norm(noisy)
        other = rng.normal(size=corpus.dim).astype(np.float32)
        out.append((i, v, noisy, other / np.linalg.norm(other)))
    return out


async def lookups(c: SemanticCache, corpus: Corpus, n: int, q: int, label: str) -> None:
    kinds: dict[str, list[float]] = {
        k: [] for k in ("exact", "semantic_big_group", "semantic_small_group", "miss_big_group")
    }
    hnsw: list[float] = []
    hnsw_cpu: list[float] = []
    found = right = exact_hits = 0
    for i, v, noisy, other in _queries(corpus, n, q, seed=1):
        s = scope_of(i)
        big = s.fingerprint == "shared"
        t0 = time.perf_counter()
        hit = await c.lookup(s, corpus.text(i), v, "factual", POLICY)
        kinds["exact"].append(time.perf_counter() - t0)
        exact_hits += hit is not None and hit.exact  # a repeated text: its latest entry
        kind = "semantic_big_group" if big else "semantic_small_group"
        t0 = time.perf_counter()
        hit = await c.lookup(s, "a paraphrase", noisy, "factual", POLICY)
        kinds[kind].append(time.perf_counter() - t0)
        found += hit is not None
        right += hit is not None and hit.entry_id == i + 1
        if big:
            t0 = time.perf_counter()
            await c.lookup(s, "unrelated", other, "factual", POLICY)
            kinds["miss_big_group"].append(time.perf_counter() - t0)
            group = (s.tenant, s.model_alias, s.fingerprint)
            wall, cpu = await c.on_index(_timed_search, c.index, group, noisy)
            hnsw.append(wall)
            hnsw_cpu.append(cpu)
    report(
        f"lookup{label}",
        n=n,
        load=load_avg(),
        exact_hit_rate=round(exact_hits / q, 4),
        semantic_hit_rate=round(found / q, 4),
        semantic_recall=round(right / q, 4),
        hnsw_big_group=pct(hnsw),
        hnsw_big_group_cpu=pct(hnsw_cpu),
        **{k: pct(v) for k, v in kinds.items() if v},
    )


def _timed_search(index: MemIndex, group: tuple[str, str, str], vec: F32) -> tuple[float, float]:
    """Wall and CPU time of one search: on a shared host the wall time's tail is mostly
    waiting for a core; the thread's CPU time is the search's own cost."""
    t0, c0 = time.perf_counter(), time.thread_time()
    index.search_group(group, vec, 5, POLICY.similarity_threshold, time.time())
    return time.perf_counter() - t0, time.thread_time() - c0


async def concurrency(
    c: SemanticCache, corpus: Corpus, n: int, levels: list[int], q: int, label: str
) -> None:
    """``level`` tasks issue semantic lookups back to back, ``q`` lookups in all."""
    queries = _queries(corpus, n, q, seed=5)
    out = {}
    for level in levels:
        samples: list[float] = []
        todo = iter(queries)

        async def worker(todo: Any = todo, samples: list[float] = samples) -> None:
            for i, _, noisy, _ in todo:
                t0 = time.perf_counter()
                await c.lookup(scope_of(i), "a paraphrase", noisy, "factual", POLICY)
                samples.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(level)))
        dt = time.perf_counter() - t0
        out[str(level)] = {**pct(samples), "lookups_per_s": round(len(samples) / dt)}
    report(f"concurrency{label}", n=n, load=load_avg(), levels=out)


async def lookups_during_writes(
    c: SemanticCache, corpus: Corpus, n: int, writes: int, q: int = 500
) -> None:
    """Semantic lookups while the write-behind writer inserts ``writes`` new entries."""
    rng = np.random.default_rng(3)
    fresh = rng.normal(size=(writes, corpus.dim)).astype(np.float32)
    t0 = time.monotonic()
    for j, v in enumerate(fresh):
        c.submit(
            NewEntry(scope=scope_of(j), category="factual", text=f"new {j}", vector=v,
                     response=RESPONSE, backend="b", tier="large"),
            POLICY,
        )  # fmt: skip
    samples = []
    for i, _, noisy, _ in _queries(corpus, n, q, seed=4):
        t1 = time.perf_counter()
        await c.lookup(scope_of(i), "a paraphrase", noisy, "factual", POLICY)
        samples.append(time.perf_counter() - t1)
    await c.flush()
    dt = time.monotonic() - t0
    report("lookup_during_writes", n=n, load=load_avg(), semantic=pct(samples),
           write_behind_entries_per_s=round(writes / dt))  # fmt: skip


async def snapshot_while_serving(c: SemanticCache, corpus: Corpus, n: int, label: str) -> None:
    """A periodic-style snapshot with lookups running: how long they are held up."""
    samples: list[float] = []
    done = asyncio.Event()

    queries = _queries(corpus, n, 2000, seed=6)

    async def serve() -> None:
        for k in range(10**9):
            i, _, noisy, _ = queries[k % len(queries)]
            if done.is_set():
                return
            t0 = time.perf_counter()
            await c.lookup(scope_of(i), "a paraphrase", noisy, "factual", POLICY)
            samples.append(time.perf_counter() - t0)

    task = asyncio.create_task(serve())
    await asyncio.sleep(0.2)
    timing = await c.snapshot()
    done.set()
    await task
    assert timing is not None
    report(f"snapshot{label}", n=n, load=load_avg(), entries=timing.entries,
           blocked_s=round(timing.blocked_s, 2), total_s=round(timing.total_s, 2),
           lookups_during=pct(samples))  # fmt: skip


async def open_timed(url: str, dim: int, snap: Path | None, label: str) -> SemanticCache:
    gc.collect()
    rss0 = rss_mb()
    t0 = time.monotonic()
    c = await SemanticCache.open(url, dim=dim, snapshot_dir=snap, snapshot_interval_s=0,
                                 doc_cache_size=10_000, write_queue_size=10_000)  # fmt: skip
    dt = time.monotonic() - t0
    n = c.counters().entries
    gc.collect()
    delta = rss_mb() - rss0
    report(f"restart_{label}", seconds=round(dt, 1), entries=n, load=load_avg(),
           rss_mb_delta=round(delta), bytes_per_entry=round(delta * 2**20 / max(n, 1)))  # fmt: skip
    return c


async def crash(c: SemanticCache) -> None:
    """Stops a cache without its closing snapshot, as a killed process would."""
    await c.bg.stop()
    await c._shutdown_resources()


async def run(args: argparse.Namespace, work: Path) -> None:
    url = args.url or f"sqlite+aiosqlite:///{work / 'cache.db'}"
    snap = work / "snap"
    corpus = Corpus(args.vectors, args.dim)
    n = args.n
    report("config", n=n, vectors=args.vectors, dim=corpus.dim, queries=args.queries,
           concurrency=args.concurrency, load=load_avg())  # fmt: skip
    if args.crossover:
        crossover(corpus.dim, max(min(n, 100_000), 20_000))
    if not args.from_snapshot:
        if args.url or not (work / "cache.db").exists():
            await bulk_fill(url, corpus, n, time.time())
        shutil.rmtree(snap, ignore_errors=True)
        c = await open_timed(url, corpus.dim, snap, "rebuild")
        try:
            await lookups(c, corpus, n, args.queries, "")
            await concurrency(c, corpus, n, args.concurrency, args.queries, "")
            await snapshot_while_serving(c, corpus, n, "")
        finally:
            await crash(c)  # the restart below must come from the last (periodic) snapshot
        del c
    c = await open_timed(url, corpus.dim, snap, "snapshot")
    try:
        await lookups(c, corpus, n, args.queries, "_after_restart")
        await concurrency(c, corpus, n, args.concurrency, args.queries, "_after_restart")
        await snapshot_while_serving(c, corpus, n, "_after_restart")
        await lookups_during_writes(c, corpus, n, args.writes, min(args.queries, 500))
        t0 = time.monotonic()
    finally:
        await c.close()
    report("close", seconds=round(time.monotonic() - t0, 2), load=load_avg())


def crossover(dim: int, total: int) -> None:
    """Exact search over a group's vectors vs filtered HNSW, by group size."""
    rng = np.random.default_rng(2)
    idx = MemIndex(dim, capacity=total)
    vecs = rng.normal(size=(total, dim)).astype(np.float32)
    sizes = [64, 256, 1024, 2048, 4096, 8192]
    metas = []
    start = 0
    for g, size in enumerate(sizes):
        metas += [
            EntryMeta(i, "t", "m", f"g{g}", "c", "large", f"h{i}", 0, 1e18, 0)
            for i in range(start, start + size)
        ]
        start += size
    metas += [
        EntryMeta(i, "t", "m", "rest", "c", "large", f"h{i}", 0, 1e18, 0)
        for i in range(start, total)
    ]
    idx.add(metas, vecs)
    out = {}
    for g, size in enumerate(sizes):
        members = idx.groups[("t", "m", f"g{g}")]
        q = rng.normal(size=(1, dim)).astype(np.float32)
        t0 = time.perf_counter()
        for _ in range(50):
            idx._arrays_cache.clear()  # count building the arrays, the worst case
            _, slots = idx._arrays(("t", "m", f"g{g}"), members)
            idx.rows.dot(slots, q[0])
        brute = (time.perf_counter() - t0) / 50
        t0 = time.perf_counter()
        for _ in range(50):
            idx.graphs["t"].knn(q, 20, members)
        hnsw = (time.perf_counter() - t0) / 50
        out[size] = {"exact_ms": round(brute * 1000, 3), "filtered_hnsw_ms": round(hnsw * 1000, 3)}
    report("crossover", total=total, groups=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--vectors", choices=("real", "random"), default="real")
    ap.add_argument("--dim", type=int, default=384, help="for --vectors random")
    ap.add_argument("--queries", type=int, default=2000, help="lookups per kind and level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--writes", type=int, default=2000, help="write-behind phase entries")
    ap.add_argument("--crossover", action="store_true", help="exact vs filtered HNSW sweep")
    ap.add_argument("--url", default=None, help="default: a SQLite file in the work dir")
    ap.add_argument("--work", type=Path, help="keep files here (reuses cache.db if present)")
    ap.add_argument(
        "--from-snapshot",
        action="store_true",
        help="with --work: skip fill and rebuild, restart from the kept snapshot",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if min(args.n, args.queries, args.writes, *args.concurrency) < 1:
        ap.error("--n, --queries, --writes and --concurrency must be >= 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="cache-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(run(args, work))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
