"""Scale benchmark of the semantic cache: write rate, lookup latency, memory, restart.

    .venv/bin/python -m bench.cache_scale --n 100000            # SQLite file in a temp dir
    .venv/bin/python -m bench.cache_scale --n 1000000 --url postgresql+asyncpg://...

Vectors are random unit vectors (the hardest case for HNSW; real embeddings cluster).
Scopes: 4 tenants; per tenant half the entries share one fingerprint (a big group, searched
with filtered HNSW) and the rest are spread over conversations of 1-20 entries (searched
exactly). Prints one JSON object per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cache import CacheScope, CategoryPolicy, NewEntry, SemanticCache
from cache.memindex import EntryMeta, MemIndex

POLICY = CategoryPolicy(similarity_threshold=0.9, max_entries=10_000_000)
RESPONSE = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 400}}]}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def scope_of(i: int) -> CacheScope:
    tenant = f"t{i % 4}"
    j = i // 4
    fp = "shared" if j % 2 == 0 else f"conv{j // 20}"
    return CacheScope(tenant=tenant, model_alias="chat", fingerprint=fp)


def report(phase: str, **values: Any) -> None:
    print(json.dumps({"phase": phase, **values}), flush=True)


def pct(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


async def fill(url: str, vecs: np.ndarray, snap: Path) -> None:
    n = len(vecs)
    rss0 = rss_mb()
    c = await SemanticCache.open(url, dim=vecs.shape[1], write_queue_size=n + 1, snapshot_dir=snap)
    t0 = time.monotonic()
    for i in range(n):
        c.submit(
            NewEntry(
                scope=scope_of(i),
                category="factual",
                text=f"question number {i}",
                vector=vecs[i],
                response=RESPONSE,
                backend="b",
                tier="large",
            ),
            POLICY,
        )
    await c.flush()
    dt = time.monotonic() - t0
    report(
        "fill",
        n=n,
        seconds=round(dt, 1),
        entries_per_s=round(n / dt),
        rss_mb_delta=round(rss_mb() - rss0),
        bytes_per_entry=round((rss_mb() - rss0) * 2**20 / n),
    )
    await lookups(c, vecs)
    await lookups_during_writes(c, vecs)
    t0 = time.monotonic()
    await c.close()
    report("close+snapshot", seconds=round(time.monotonic() - t0, 2))


async def lookups(c: SemanticCache, vecs: np.ndarray, q: int = 2000) -> None:
    rng = np.random.default_rng(1)
    n = len(vecs)
    idx = rng.integers(0, n, size=q)
    kinds: dict[str, list[float]] = {
        "exact": [],
        "semantic_big_group": [],
        "semantic_small_group": [],
        "miss_big_group": [],
    }
    for i in idx:
        i = int(i)
        s = scope_of(i)
        noisy = vecs[i] + rng.normal(scale=0.01, size=vecs.shape[1]).astype(np.float32)
        big = s.fingerprint == "shared"
        for kind, text, vec in (
            ("exact", f"question number {i}", vecs[i]),
            ("semantic_big_group" if big else "semantic_small_group", "paraphrase", noisy),
        ):
            t0 = time.perf_counter()
            hit = await c.lookup(s, text, vec, "factual", POLICY)
            kinds[kind].append(time.perf_counter() - t0)
            assert hit is not None, (kind, i)
        if big:
            other = rng.normal(size=vecs.shape[1]).astype(np.float32)
            t0 = time.perf_counter()
            await c.lookup(s, "unrelated", other, "factual", POLICY)
            kinds["miss_big_group"].append(time.perf_counter() - t0)
    report("lookup", n=n, **{k: pct(v) for k, v in kinds.items() if v})


async def lookups_during_writes(c: SemanticCache, vecs: np.ndarray, q: int = 500) -> None:
    """Semantic lookups while the writer inserts 2000 new entries (write-behind batches)."""
    rng = np.random.default_rng(3)
    fresh = rng.normal(size=(2000, vecs.shape[1])).astype(np.float32)
    for j, v in enumerate(fresh):
        c.submit(
            NewEntry(
                scope=scope_of(j),
                category="factual",
                text=f"new {j}",
                vector=v,
                response=RESPONSE,
                backend="b",
                tier="large",
            ),
            POLICY,
        )
    samples = []
    for i in rng.integers(0, len(vecs), size=q):
        t0 = time.perf_counter()
        await c.lookup(scope_of(int(i)), "paraphrase", vecs[int(i)], "factual", POLICY)
        samples.append(time.perf_counter() - t0)
    await c.flush()
    report("lookup_during_writes", n=len(vecs), semantic=pct(samples))


async def restart(url: str, dim: int, snap: Path | None, label: str) -> None:
    t0 = time.monotonic()
    c = await SemanticCache.open(url, dim=dim, snapshot_dir=snap)
    report(
        f"restart_{label}", seconds=round(time.monotonic() - t0, 1), entries=c.counters().entries
    )
    await c.close() if snap is None else await c.bg.stop()
    if snap is not None:
        await c._shutdown_resources()


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


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--url", default=None, help="default: a SQLite file in a temp dir")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cache-scale-"))
    url = args.url or f"sqlite+aiosqlite:///{work / 'cache.db'}"
    vecs = np.random.default_rng(0).normal(size=(args.n, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    try:
        crossover(args.dim, max(min(args.n, 100_000), 20_000))
        await fill(url, vecs, work / "snap")
        await restart(url, args.dim, work / "snap", "snapshot")
        await restart(url, args.dim, None, "rebuild")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
