"""Index snapshots and start-up loading.

A snapshot is a directory: ``graph-<i>.bin`` per tenant (hnswlib ``save_index``), the live
labels with their tenant numbers and float32 vectors (``labels.npy``, ``owners.npy``,
``vectors.npy``), their metadata as columns (``meta-<column>.npy``; strings as codes into
tables kept in ``meta.json``) and ``meta.json`` ``{"format", "dim", "seq", "entries",
"saved_at", "tenants", "strings", "space_generation"}``, written last. The generation is
the store's vector-space generation (:mod:`cache.vector_space`): a re-embedding keeps the
ids and replaces the vectors, so a snapshot of another generation is never restored.

Atomicity: a snapshot is written into ``<dir>.tmp`` (files fsynced, ``meta.json`` last),
then ``<dir>`` is renamed to ``<dir>.old`` and ``<dir>.tmp`` to ``<dir>``. A crash at any
point leaves a complete snapshot under one of the three names; loading tries ``<dir>``,
then ``<dir>.tmp``, then ``<dir>.old``, taking the first whose ``meta.json`` is valid.

Saving must see the index unchanging, and every index operation (lookups included) runs
on the cache's one index thread. Where ``os.fork`` exists the index thread forks (the
Redis BGSAVE way): the child holds a copy-on-write image of the index and writes the
whole snapshot while the parent serves again at once, held only for the fork itself
(~0.1 s at 1M entries, against ~19 s to write the graphs and copy the vectors in place on
a loaded 2-core host). The child touches no lock, thread, connection or event loop of the
parent: it writes files, then ``os._exit``. Elsewhere the graphs are written and the
vectors copied on the index thread, and the rest is written on a worker thread.

Start-up reconciles against SQL, the source of truth, without reading its rows: the ids of
the live (undeleted, unexpired) entries are read (one column, from the
``(deleted, expires_at)`` index); snapshot labels still live are restored from the
snapshot's own metadata, labels no longer live are marked deleted in the graphs, and only
the live entries the snapshot lacks (written after it, or by other replicas) are read with
their vectors and added. An entry's metadata never changes after it is written (but for hit
statistics), so ids alone decide. Without a usable snapshot the graphs are rebuilt from the
stored vectors. Changes after the change sequence read first are replayed by the poller.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from cache.errors import CacheError
from cache.memindex import EntryMeta, MemIndex
from cache.store import DocumentStore

log = logging.getLogger(__name__)
FORMAT = 2
LIVE_CHUNK = 8
Matrix = np.ndarray[Any, np.dtype[np.float32]]
_T = TypeVar("_T")
ARRAYS = ("labels", "owners", "vectors")
STRING_COLUMNS = ("model_alias", "fingerprint", "category", "tier")
NUMBER_COLUMNS = ("created_at", "expires_at", "nbytes", "hit_count", "last_hit_at")
META_FILES = tuple(f"meta-{c}.npy" for c in (*STRING_COLUMNS, *NUMBER_COLUMNS, "exact_hash"))


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


@dataclass(frozen=True, slots=True)
class SnapshotTiming:
    """How long :func:`save_snapshot` held the index thread (lookups wait that long at
    most) and how long the whole save took."""

    entries: int
    blocked_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a start-up from a snapshot did."""

    path: Path
    restored: int  # snapshot entries still live in SQL
    fetched: int  # live entries the snapshot lacked, read from SQL
    stale: int  # snapshot entries no longer live (deleted, expired)
    seconds: float
    # Where the time went: the label and vector arrays; then, at once, the metadata objects,
    # the live ids from SQL and the hnswlib graphs; the index structures; newer SQL rows.
    arrays_s: float = 0.0
    parallel_s: float = 0.0
    index_s: float = 0.0
    fetch_s: float = 0.0


@dataclass(slots=True)
class _Captured:
    """What the index thread hands to the writer thread."""

    tenants: list[str]
    labels: npt.NDArray[np.int64]
    owners: npt.NDArray[np.int32]
    vectors: npt.NDArray[np.float32]
    metas: list[EntryMeta]
    seconds: float  # time on the index thread


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

    async def from_snapshot(
        self, directory: Path, now: float, generation: int = 0
    ) -> LoadReport | None:
        """Loads the newest complete snapshot of this space ``generation`` and reconciles
        it with the live ids in SQL; ``None`` when there is none usable (the caller
        rebuilds)."""
        started = time.monotonic()
        found = find_snapshot(directory, self.index.dim, generation)
        if found is None:
            return None
        path, info = found
        marks = [time.monotonic()]
        labels, owners, vectors = await asyncio.to_thread(_read_arrays, path)
        marks.append(time.monotonic())
        # Three independent reads at once, each off the loop: the metadata objects (a
        # worker thread), the live ids (the SQL driver) and the graphs (the index thread).
        metas, live, _ = await asyncio.gather(
            asyncio.to_thread(_read_metas, path, info, labels, owners),
            self.store.live_ids(now),
            self._on_index(self.index.load_graphs, path, info["tenants"], owners),
        )
        marks.append(time.monotonic())
        keep = np.isin(labels, live, assume_unique=True)
        kept_rows = np.flatnonzero(keep)
        kept = [metas[i] for i in kept_rows.tolist()]
        tenants = info["tenants"]
        stale = [(int(labels[i]), tenants[owners[i]]) for i in np.flatnonzero(~keep).tolist()]
        await self._on_index(self.index.restore, kept, kept_rows, stale, vectors, len(labels))
        marks.append(time.monotonic())
        new = np.setdiff1d(live, labels, assume_unique=True)
        fetched = 0
        for start in range(0, len(new), 5000):
            ids = [int(i) for i in new[start : start + 5000]]
            fetched += await self.add_rows(await self.store.live_rows(ids, now, vectors=True))
        marks.append(time.monotonic())
        steps = [round(b - a, 2) for a, b in itertools.pairwise(marks)]
        report = LoadReport(path, len(kept), fetched, len(stale), marks[-1] - started, *steps)
        log.info(
            "cache snapshot %s (seq %s): %d restored, %d read from SQL, %d stale, %.1fs "
            "(arrays %.1fs, metadata + live ids + graphs %.1fs, index %.1fs, newer rows %.1fs)",
            path,
            info["seq"],
            report.restored,
            report.fetched,
            report.stale,
            report.seconds,
            *steps,
        )
        return report


def _candidates(directory: Path) -> list[Path]:
    return [directory, _sibling(directory, ".tmp"), _sibling(directory, ".old")]


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(directory.name + suffix)


def read_meta(directory: Path, dim: int, generation: int = 0) -> dict[str, Any] | None:
    """The snapshot's ``meta.json`` if it is complete and of this format, dimension and
    space generation."""
    try:
        info: dict[str, Any] = json.loads((directory / "meta.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cache snapshot in %s ignored: %s", directory, exc)
        return None
    if info.get("format") != FORMAT or info.get("dim") != dim:
        log.warning(
            "cache snapshot in %s ignored: format %s dim %s (want %s, %s)",
            directory,
            info.get("format"),
            info.get("dim"),
            FORMAT,
            dim,
        )
        return None
    if info.get("space_generation", 0) != generation:
        log.warning(
            "cache snapshot in %s ignored: vector-space generation %s, the store's is %s "
            "(its vectors were replaced since)",
            directory,
            info.get("space_generation", 0),
            generation,
        )
        return None
    files = [f"{a}.npy" for a in ARRAYS] + list(META_FILES)
    files += [f"graph-{i}.bin" for i in range(len(info.get("tenants", [])))]
    if not all((directory / f).exists() for f in files):
        log.warning("cache snapshot in %s ignored: files missing", directory)
        return None
    return info


def find_snapshot(
    directory: Path, dim: int, generation: int = 0
) -> tuple[Path, dict[str, Any]] | None:
    """The first complete snapshot of ``<dir>``, ``<dir>.tmp`` (a save that crashed between
    its two renames), ``<dir>.old``."""
    for path in _candidates(directory):
        info = read_meta(path, dim, generation)
        if info is not None:
            return path, info
    return None


def _read_arrays(
    path: Path,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], Matrix]:
    """Labels, owners and the vectors, read into an array with as many rows again free
    (as the graphs get): room for the index to grow without copying every row."""
    labels, owners = (np.load(path / f"{a}.npy") for a in ARRAYS[:2])
    with open(path / "vectors.npy", "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise CacheError(f"snapshot {path}: vectors.npy has format {version}")
        if dtype != np.float32 or fortran or len(shape) != 2 or shape[0] != len(labels):
            raise CacheError(f"snapshot {path}: vectors.npy is {dtype} {shape}")
        vectors = np.empty((max(2 * shape[0], 1024), shape[1]), np.float32)
        buf = vectors[: shape[0]].data.cast("B")
        done = 0
        while done < len(buf):  # one read(2) returns at most ~2 GiB
            got = fh.readinto(buf[done:])
            if not got:
                raise CacheError(f"snapshot {path}: vectors.npy is truncated")
            done += got
    if len(owners) != len(labels):
        raise CacheError(f"snapshot {path}: arrays of different lengths")
    return labels, owners, vectors


def _read_metas(
    path: Path, info: dict[str, Any], labels: npt.NDArray[np.int64], owners: npt.NDArray[np.int32]
) -> list[EntryMeta]:
    cols = {c: np.load(path / f"meta-{c}.npy") for c in (*STRING_COLUMNS, *NUMBER_COLUMNS)}
    exact = np.load(path / "meta-exact_hash.npy")
    if any(len(a) != len(labels) for a in (exact, *cols.values())):
        raise CacheError(f"snapshot {path}: metadata of a different length")
    intern = sys.intern
    tenants = [intern(t) for t in info["tenants"]]
    strings = {c: [intern(s) for s in info["strings"][c]] for c in STRING_COLUMNS}
    decoded = {c: [strings[c][k] for k in cols[c].tolist()] for c in STRING_COLUMNS}
    last_hit = [None if math.isnan(x) else x for x in cols["last_hit_at"].tolist()]
    return [
        EntryMeta(eid, tenants[o], al, fp, cat, tier, h.decode(), ca, ea, nb, hc, lh)
        for eid, o, al, fp, cat, tier, h, ca, ea, nb, hc, lh in zip(
            labels.tolist(),
            owners.tolist(),
            decoded["model_alias"],
            decoded["fingerprint"],
            decoded["category"],
            decoded["tier"],
            exact.tolist(),
            cols["created_at"].tolist(),
            cols["expires_at"].tolist(),
            cols["nbytes"].tolist(),
            cols["hit_count"].tolist(),
            last_hit,
            strict=True,
        )
    ]


def capture(index: MemIndex, directory: Path) -> _Captured:
    """On the index thread: writes the graphs into a fresh ``<dir>.tmp`` and copies what
    the rest of the snapshot needs, so the index can change again as soon as it returns."""
    started = time.monotonic()
    tmp = _sibling(directory, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tenants, labels, owners, vectors = index.save_graphs(tmp)
    # The objects, not copies: their fields never change but for hit statistics.
    metas = list(index.meta.values())
    return _Captured(tenants, labels, owners, vectors, metas, time.monotonic() - started)


def write(
    captured: _Captured, directory: Path, dim: int, seq: int, now: float, generation: int = 0
) -> None:
    """Off the index thread: the other files, fsynced, then the swap."""
    tmp, old = _sibling(directory, ".tmp"), _sibling(directory, ".old")
    ms = captured.metas
    for name, arr in (
        ("labels", captured.labels),
        ("owners", captured.owners),
        ("vectors", captured.vectors),
    ):
        _save(tmp / f"{name}.npy", arr)
    strings: dict[str, list[str]] = {}
    for col in STRING_COLUMNS:
        table: dict[str, int] = {}
        codes = np.fromiter(
            (table.setdefault(getattr(m, col), len(table)) for m in ms), np.int32, len(ms)
        )
        strings[col] = list(table)
        _save(tmp / f"meta-{col}.npy", codes)
    numbers: tuple[tuple[str, type[Any], Iterable[Any]], ...] = (
        ("created_at", np.float64, (m.created_at for m in ms)),
        ("expires_at", np.float64, (m.expires_at for m in ms)),
        ("nbytes", np.int64, (m.nbytes for m in ms)),
        ("hit_count", np.int64, (m.hit_count for m in ms)),
        ("last_hit_at", np.float64, (math.nan if m.last_hit_at is None else m.last_hit_at
                                     for m in ms)),
    )  # fmt: skip
    for col, dtype, values in numbers:
        _save(tmp / f"meta-{col}.npy", np.fromiter(values, dtype, len(ms)))
    exact = np.array([m.exact_hash.encode() for m in ms], dtype="S64").reshape(len(ms))
    _save(tmp / "meta-exact_hash.npy", exact)
    for i in range(len(captured.tenants)):
        _fsync(tmp / f"graph-{i}.bin")
    meta = {
        "format": FORMAT,
        "dim": dim,
        "seq": seq,
        "entries": len(ms),
        "saved_at": now,
        "tenants": captured.tenants,
        "strings": strings,
        "space_generation": generation,
    }
    with open(tmp / "meta.json", "w") as fh:
        json.dump(meta, fh)
        fh.flush()
        os.fsync(fh.fileno())
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _save(path: Path, arr: npt.NDArray[Any]) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fork_writer(
    index: MemIndex, directory: Path, seq: int, now: float, generation: int
) -> tuple[int, int, float]:
    """On the index thread: forks a child that writes the snapshot of the index as it is
    now; returns (child pid, entries, seconds the index thread was held)."""
    started = time.monotonic()
    entries = len(index.meta)
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        code = 1
        try:
            gc.disable()  # a collection would touch every object: copy-on-write for nothing
            # Signals end the child like any process; none reaches the parent's event loop
            # through the wakeup pipe the child shares with it.
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            write(capture(index, directory), directory, index.dim, seq, now, generation)
            code = 0
        except BaseException:  # noqa: BLE001  the child must reach os._exit; the parent raises
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid, entries, time.monotonic() - started


async def save_snapshot(
    index: MemIndex,
    directory: Path,
    executor: Executor,
    seq: int,
    now: float,
    *,
    generation: int = 0,
    fork: bool = hasattr(os, "fork"),
) -> SnapshotTiming:
    """Writes a snapshot of ``index`` (whose only thread is ``executor``) to ``directory``
    atomically, from a forked child when ``fork``. Raises OSError when it could not be
    written (the previous snapshot is kept)."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    if fork:
        pid, entries, held = await loop.run_in_executor(
            executor, _fork_writer, index, directory, seq, now, generation
        )
        # Polled rather than waited for on a worker thread: at 1M entries the child runs
        # ~45 s, which would hold one of the default pool's few threads (the equivalence
        # check runs there).
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222  (WNOHANG: no wait)
            if done:
                break
            await asyncio.sleep(0.05)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise OSError(f"snapshot writer process {pid} exited with {code} (see its stderr)")
        return SnapshotTiming(entries, held, time.monotonic() - started)
    captured = await loop.run_in_executor(executor, capture, index, directory)
    await asyncio.to_thread(write, captured, directory, index.dim, seq, now, generation)
    return SnapshotTiming(len(captured.metas), captured.seconds, time.monotonic() - started)
