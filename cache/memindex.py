"""In-memory search state: one hnswlib graph plus per-entry metadata.

Not thread-safe by design: the owning :class:`~cache.semantic_cache.SemanticCache` touches
it only from one executor thread, so adds, deletes, resizes and queries never overlap
(hnswlib allows concurrent add/query, but not alongside ``mark_deleted``/``resize_index``).

Scoping: a lookup may only match entries of its own (tenant, model alias, fingerprint)
group. Small groups (the common case: conversations, rare system prompts) are searched
exactly with one matrix product over their vectors; large groups use the global graph
with ``filter=group.__contains__`` (a C-level set lookup). Filtered HNSW explores about
``ef / share-of-index`` nodes, so it is only used when the group is big enough.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import hnswlib
import numpy as np
import numpy.typing as npt

from cache.errors import CacheError
from cache.types import Vector

log = logging.getLogger(__name__)

GroupKey = tuple[str, str, str]
_Pred = Callable[["EntryMeta"], bool]
_K = TypeVar("_K")
BRUTE_FORCE_MAX = 4096  # bench/cache_scale.py crossover: exact 4096x384 ~0.3 ms


@dataclass(slots=True)
class EntryMeta:
    """What a lookup needs to know about an entry without going to SQL."""

    entry_id: int
    tenant: str
    model_alias: str
    fingerprint: str
    category: str
    tier: str
    exact_hash: str
    created_at: float
    expires_at: float
    nbytes: int
    hit_count: int = 0
    last_hit_at: float | None = None
    slot: int = -1  # row in VectorRows, set when indexed

    @property
    def group(self) -> GroupKey:
        return (self.tenant, self.model_alias, self.fingerprint)


class MemIndex:
    """HNSW graph (labels = SQL entry ids) and the metadata to scope and expire them."""

    def __init__(
        self, dim: int, *, capacity: int = 1024, m: int = 16, ef_construction: int = 100
    ) -> None:
        self.dim = dim
        self.graph = hnswlib.Index(space="ip", dim=dim)
        self.graph.init_index(
            max_elements=capacity,
            M=m,
            ef_construction=ef_construction,
            allow_replace_deleted=True,
        )
        self.graph.set_ef(64)
        self.meta: dict[int, EntryMeta] = {}
        self.exact: dict[str, int] = {}
        self.groups: dict[GroupKey, set[int]] = {}
        self.tenants: dict[str, set[int]] = {}
        self.rows = VectorRows(dim, capacity)
        # Group/tenant key -> (ids, slots) arrays for exact search; dropped on change.
        self._group_arrays: dict[object, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        self._expiry: list[tuple[float, int]] = []  # heap; stale items skipped when popped
        # Labels of a loaded snapshot not yet adopted -> their row in _preloaded_vectors.
        self._preloaded: dict[int, int] = {}
        self._preloaded_vectors: npt.NDArray[np.float32] = np.zeros((0, dim), np.float32)

    # -- mutation ---------------------------------------------------------------------
    def add(self, metas: list[EntryMeta], vectors: npt.NDArray[np.float32]) -> int:
        """Adds entries not already present; returns how many were new."""
        keep = [i for i, m in enumerate(metas) if m.entry_id not in self.meta]
        if not keep:
            return 0
        vecs = _unit(vectors[keep])
        ids = np.array([metas[i].entry_id for i in keep], dtype=np.int64)
        # Deleted slots are reused first (replace_deleted); grow only for the rest.
        used = self.graph.get_current_count()
        reusable = used - len(self.meta) - len(self._preloaded)
        cap = self.graph.get_max_elements()
        if used + len(keep) - max(reusable, 0) > cap:
            self.graph.resize_index(max(cap * 2, used + len(keep)))
        self.graph.add_items(vecs, ids, replace_deleted=True)
        for i, slot in zip(keep, self.rows.put(vecs), strict=True):
            metas[i].slot = slot
            self._remember(metas[i])
        return len(keep)

    def _remember(self, m: EntryMeta) -> None:
        heapq.heappush(self._expiry, (m.expires_at, m.entry_id))
        self.meta[m.entry_id] = m
        self.exact[m.exact_hash] = m.entry_id
        self.groups.setdefault(m.group, set()).add(m.entry_id)
        self.tenants.setdefault(m.tenant, set()).add(m.entry_id)
        self._group_arrays.pop(m.group, None)
        self._group_arrays.pop(m.tenant, None)

    def remove(self, entry_ids: list[int]) -> list[EntryMeta]:
        """Forgets entries (idempotent); their graph slots become reusable."""
        gone: list[EntryMeta] = []
        for eid in entry_ids:
            m = self.meta.pop(eid, None)
            if m is None:
                continue
            self.graph.mark_deleted(eid)
            self.rows.release(m.slot)
            if self.exact.get(m.exact_hash) == eid:
                del self.exact[m.exact_hash]
            _discard(self.groups, m.group, eid)
            _discard(self.tenants, m.tenant, eid)
            self._group_arrays.pop(m.group, None)
            self._group_arrays.pop(m.tenant, None)
            gone.append(m)
        return gone

    def expired(self, now: float) -> list[int]:
        """Live entries whose TTL has passed (O(expired log n), not a scan)."""
        out = []
        while self._expiry and self._expiry[0][0] <= now:
            at, eid = heapq.heappop(self._expiry)
            m = self.meta.get(eid)
            if m is not None and m.expires_at == at:
                out.append(eid)
        return out

    # -- queries ----------------------------------------------------------------------
    def exact_match(self, key: str, now: float) -> EntryMeta | None:
        eid = self.exact.get(key)
        m = self.meta.get(eid) if eid is not None else None
        return m if m is not None and m.expires_at > now else None

    def search_group(
        self, group: GroupKey, vector: Vector, k: int, floor: float, now: float
    ) -> list[tuple[int, float]]:
        """Top-``k`` live entries of ``group`` with cosine >= ``floor``, best first."""
        members = self.groups.get(group)
        if not members:
            return []
        return self._search(group, members, vector, k, floor, lambda m: m.expires_at > now)

    def search_tenant(
        self,
        tenant: str,
        vector: Vector,
        k: int,
        floor: float,
        now: float,
        tier: str | None,
        model_alias: str | None,
    ) -> list[tuple[int, float]]:
        members = self.tenants.get(tenant)
        if not members:
            return []

        def ok(m: EntryMeta) -> bool:
            return (
                m.expires_at > now
                and (tier is None or m.tier == tier)
                and (model_alias is None or m.model_alias == model_alias)
            )

        return self._search(tenant, members, vector, k, floor, ok)

    def _arrays(
        self, key: object, members: set[int]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Ids and slots of a group as arrays, cached until the group changes."""
        got = self._group_arrays.get(key)
        if got is None:
            ids = np.fromiter(members, dtype=np.int64, count=len(members))
            meta = self.meta
            slots = np.fromiter((meta[i].slot for i in members), np.int64, len(members))
            got = self._group_arrays[key] = (ids, slots)
        return got

    def _search(
        self, key: object, members: set[int], vector: Vector, k: int, floor: float, ok: _Pred
    ) -> list[tuple[int, float]]:
        q = _unit(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if len(members) <= BRUTE_FORCE_MAX:
            ids, slots = self._arrays(key, members)
            sims = self.rows.dot(slots, q[0])
            top = np.flatnonzero(sims >= floor)
            top = top[np.argsort(-sims[top])[: k * 4]]
            pairs = [(int(ids[i]), float(sims[i])) for i in top]
        else:
            pairs = self._knn_filtered(members, q, min(k * 4, len(members)))
        out = [(eid, s) for eid, s in pairs if s >= floor and ok(self.meta[eid])]
        return out[:k]

    def _knn_filtered(self, members: set[int], q: Vector, k: int) -> list[tuple[int, float]]:
        while k >= 1:
            try:
                labels, dists = self.graph.knn_query(
                    q, k=k, num_threads=1, filter=members.__contains__
                )
            except RuntimeError:
                k //= 2  # fewer than k reachable under the filter
                continue
            return [(int(lb), 1.0 - float(d)) for lb, d in zip(labels[0], dists[0], strict=True)]
        return []

    # -- snapshot ---------------------------------------------------------------------
    def save_graph(self, path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Writes the graph; returns its live labels and their vectors (same order)."""
        self.graph.save_index(str(path))
        labels = np.fromiter(self.meta, dtype=np.int64, count=len(self.meta))
        slots = np.fromiter((m.slot for m in self.meta.values()), np.int64, len(self.meta))
        return labels, self.rows.take(slots)

    def load_graph(
        self, path: Path, labels: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
    ) -> None:
        """Replaces the graph with a saved one whose live labels are ``labels``."""
        graph = hnswlib.Index(space="ip", dim=self.dim)
        capacity = max(2 * len(labels), 1024)
        graph.load_index(str(path), max_elements=capacity, allow_replace_deleted=True)
        if graph.dim != self.dim or vectors.shape != (len(labels), self.dim):
            raise CacheError(f"snapshot shape {vectors.shape} does not match dim {self.dim}")
        graph.set_ef(64)
        self.graph = graph
        self._preloaded = {int(lb): i for i, lb in enumerate(labels)}
        self._preloaded_vectors = vectors

    def adopt(self, metas: list[EntryMeta]) -> list[EntryMeta]:
        """After :meth:`load_graph`: attach metadata to labels already in the graph.

        Returns the metas whose vectors the graph lacks (the caller adds them); labels
        in the graph with no live meta are marked deleted by :meth:`drop_unadopted`.
        """
        pre = self._preloaded
        found: list[EntryMeta] = []
        missing: list[EntryMeta] = []
        for m in metas:
            (found if m.entry_id in pre and m.entry_id not in self.meta else missing).append(m)
        if found:
            rows = [pre.pop(m.entry_id) for m in found]
            for m, slot in zip(found, self.rows.put(self._preloaded_vectors[rows]), strict=True):
                m.slot = slot
                self._remember(m)
        return missing

    def drop_unadopted(self) -> int:
        stale = list(self._preloaded)
        for lb in stale:
            self.graph.mark_deleted(lb)
        self._preloaded = {}
        self._preloaded_vectors = np.zeros((0, self.dim), np.float32)
        return len(stale)


class VectorRows:
    """A float32 copy of the live vectors, by slot, for exact search in small groups.

    hnswlib's ``get_items`` copies item by item (~20 µs each), far too slow for a
    per-lookup scan, so the vectors are kept twice; freed slots are reused.
    """

    def __init__(self, dim: int, capacity: int) -> None:
        self.data = np.zeros((max(capacity, 16), dim), dtype=np.float32)
        self.free: list[int] = []
        self.used = 0

    def put(self, vecs: npt.NDArray[np.float32]) -> list[int]:
        n = len(vecs)
        slots = [self.free.pop() for _ in range(min(n, len(self.free)))]
        fresh = n - len(slots)
        if self.used + fresh > len(self.data):
            grown = np.zeros(
                (max(2 * len(self.data), self.used + fresh), self.data.shape[1]), dtype=np.float32
            )
            grown[: self.used] = self.data[: self.used]
            self.data = grown
        slots += range(self.used, self.used + fresh)
        self.used += fresh
        self.data[slots] = vecs
        return slots

    def release(self, slot: int) -> None:
        self.free.append(slot)

    def dot(self, slots: npt.NDArray[np.int64], q: Vector) -> npt.NDArray[np.float32]:
        """Similarities of ``q`` to the rows ``slots``, in blocks of 512 rows: larger
        products make OpenBLAS start threads, which costs milliseconds on a busy host."""
        out = np.empty(len(slots), dtype=np.float32)
        for start in range(0, len(slots), 512):
            out[start : start + 512] = self.data[slots[start : start + 512]] @ q
        return out

    def take(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        out: npt.NDArray[np.float32] = self.data[slots]
        return out


def _discard(table: dict[_K, set[int]], key: _K, eid: int) -> None:
    members = table.get(key)
    if members is not None:
        members.discard(eid)
        if not members:
            del table[key]


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    v = np.ascontiguousarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: npt.NDArray[np.float32] = (v / norms).astype(np.float32, copy=False)
    return out
