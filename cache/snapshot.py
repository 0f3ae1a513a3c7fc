"""Index snapshots and start-up loading.

Snapshot format (a directory): ``index.bin`` (hnswlib ``save_index``), ``labels.npy``
(int64 live labels in the graph), ``vectors.npy`` (their float32 vectors, same order) and ``meta.json`` ``{"format", "dim", "seq", "entries",
"saved_at"}``, each written to a temporary name and renamed, ``meta.json`` last, so a
crash mid-save leaves the previous snapshot or none.

Start-up reconciles against SQL, the source of truth: the change sequence is read first,
then all live (unexpired, undeleted) metadata rows are streamed without vectors; labels
the snapshot holds are adopted, entries it lacks are fetched with vectors and added, and
labels no longer live are marked deleted. Without a usable snapshot the graph is rebuilt
from the stored vectors. Changes after the sequence read first are replayed by the poller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import sqlalchemy as sa

from cache.errors import CacheError
from cache.memindex import EntryMeta, MemIndex
from cache.store import DocumentStore

log = logging.getLogger(__name__)
FORMAT = 1
LIVE_CHUNK = 8
Matrix = np.ndarray[Any, np.dtype[np.float32]]
_T = TypeVar("_T")


def meta_from_row(r: sa.Row[Any]) -> EntryMeta:
    return EntryMeta(
        entry_id=int(r.id),
        # Interned: these repeat across entries, and 1M rows would hold 1M copies.
        tenant=sys.intern(r.tenant),
        model_alias=sys.intern(r.model_alias),
        fingerprint=sys.intern(r.fingerprint),
        category=sys.intern(r.category),
        tier=sys.intern(r.tier),
        exact_hash=r.exact_hash,
        created_at=float(r.created_at),
        expires_at=float(r.expires_at),
        nbytes=int(r.nbytes),
        hit_count=int(r.hit_count),
        last_hit_at=r.last_hit_at,
    )


def vectors_from_rows(rows: list[sa.Row[Any]], dim: int) -> Matrix:
    out = np.empty((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        v = np.frombuffer(r.vector, dtype=np.float32)
        if v.shape[0] != dim:
            raise CacheError(
                f"stored vector of entry {r.id} has dim {v.shape[0]}, cache opened with dim "
                f"{dim}: the store was filled by another embedding model"
            )
        out[i] = v
    return out


class Loader:
    """Runs the index operations of a load on the cache's index thread."""

    def __init__(self, store: DocumentStore, index: MemIndex, executor: Executor) -> None:
        self.store, self.index, self.executor = store, index, executor

    async def _on_index(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def add_rows(self, rows: list[sa.Row[Any]], chunk: int = 1024) -> int:
        if not rows:
            return 0
        return await self.add(
            [meta_from_row(r) for r in rows], vectors_from_rows(rows, self.index.dim), chunk
        )

    async def add(self, metas: list[EntryMeta], vecs: Matrix, chunk: int) -> int:
        """Adds to the index ``chunk`` entries per call on the index thread: while serving,
        small chunks (``LIVE_CHUNK``) let lookups run between them instead of waiting for
        a whole batch of graph insertions (~0.5 ms each)."""
        added = 0
        for start in range(0, len(metas), chunk):
            end = start + chunk
            added += await self._on_index(self.index.add, metas[start:end], vecs[start:end])
        return added

    async def rebuild(self, now: float) -> int:
        started, total = time.monotonic(), 0
        async for rows in self.store.iter_live(now, vectors=True):
            total += await self.add_rows(rows)
            log.info("cache rebuild: %d entries indexed (%.1fs)", total, time.monotonic() - started)
        return total

    async def from_snapshot(self, directory: Path, now: float) -> int | None:
        """Loads and reconciles a snapshot; ``None`` when there is none usable."""
        info = read_meta(directory, self.index.dim)
        if info is None:
            return None
        arrays = [np.load(directory / f) for f in ("labels.npy", "owners.npy", "vectors.npy")]
        await self._on_index(self.index.load_graphs, directory, info["tenants"], *arrays)
        adopted = 0
        async for rows in self.store.iter_live(now, vectors=False):
            metas = [meta_from_row(r) for r in rows]
            missing = await self._on_index(self.index.adopt, metas)
            adopted += len(metas) - len(missing)
            fresh = await self.store.live_rows([m.entry_id for m in missing], now, vectors=True)
            await self.add_rows(fresh)
        stale = await self._on_index(self.index.drop_unadopted)
        log.info("cache snapshot seq %s: %d adopted, %d stale", info["seq"], adopted, stale)
        return len(self.index.meta)


def read_meta(directory: Path, dim: int) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("format") != FORMAT or info.get("dim") != dim:
        log.warning("cache snapshot in %s ignored: format/dim %s", directory, info)
        return None
    files = ["labels.npy", "owners.npy", "vectors.npy"]
    files += [f"graph-{i}.bin" for i in range(len(info.get("tenants", [])))]
    if not all((directory / f).exists() for f in files):
        log.warning("cache snapshot in %s ignored: files missing", directory)
        return None
    return info


def save_snapshot(index: MemIndex, directory: Path, seq: int, now: float) -> None:
    """Writes a snapshot (call on the index thread) into a fresh folder, then swaps it in."""
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tenants, labels, owners, vectors = index.save_graphs(tmp)
    np.save(tmp / "labels.npy", labels)
    np.save(tmp / "owners.npy", owners)
    np.save(tmp / "vectors.npy", vectors)
    meta = {
        "format": FORMAT,
        "dim": index.dim,
        "seq": seq,
        "entries": len(labels),
        "saved_at": now,
        "tenants": tenants,
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
