"""In-memory search state: one hnswlib graph per tenant plus per-entry metadata.

Not thread-safe by design: the owning :class:`~cache.semantic_cache.SemanticCache` touches
it only from one executor thread. hnswlib's maintainers state that searching while
inserting is not thread-safe (nmslib/hnswlib#29, #100, #562), and ``mark_deleted`` /
``resize_index`` must not overlap a search either.

Scoping (numbers from ``bench/cache_scale.py``): a lookup may only match entries of its
own (tenant, model alias, fingerprint) group.

* Groups of up to ``BRUTE_FORCE_MAX`` entries (conversations, rare system prompts) are
  searched exactly over a float32 copy of their vectors: ~0.4 ms for 4096 entries, and
  exact, so a small group never misses a paraphrase because of graph connectivity.
* Larger groups use their tenant's graph with ``filter=group.__contains__``. Filtered
  HNSW explores about ``ef / share`` nodes: over a 100k-entry graph a 4096-entry group
  (4 %) cost 10.5 ms, so one global graph would make small tenants slow. One graph per
  tenant keeps the share high (a tenant's big groups are usually most of its entries).
* Neighbours for the router search the tenant's graph, unfiltered but for tier/alias.
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
BRUTE_FORCE_MAX = 4096
IdsSlots = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


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


class Graph:
    """One tenant's hnswlib index (labels = entry ids); grows by doubling and reuses the
    slots of deleted labels (``allow_replace_deleted``)."""

    def __init__(self, dim: int, capacity: int = 256, index: hnswlib.Index | None = None) -> None:
        if index is None:
            index = hnswlib.Index(space="ip", dim=dim)
            index.init_index(
                max_elements=capacity, M=16, ef_construction=100, allow_replace_deleted=True
            )
        index.set_ef(64)
        self.index = index
        self.live = 0  # labels not marked deleted

    def add(self, vecs: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        n = len(ids)
        used = self.index.get_current_count()  # includes deleted slots
        reusable = used - self.live
        cap = self.index.get_max_elements()
        if used + n - min(reusable, n) > cap:
            self.index.resize_index(max(cap * 2, used + n))
        self.index.add_items(vecs, ids, replace_deleted=True)
        self.live += n

    def delete(self, label: int) -> None:
        self.index.mark_deleted(label)
        self.live -= 1

    def knn(self, q: Vector, k: int, members: set[int] | None) -> list[tuple[int, float]]:
        k = min(k, self.live, len(members) if members is not None else self.live)
        flt = members.__contains__ if members is not None else None
        while k >= 1:
            try:
                labels, dists = self.index.knn_query(q, k=k, num_threads=1, filter=flt)
            except RuntimeError:
                k //= 2  # fewer than k reachable (under the filter)
                continue
            return [(int(lb), 1.0 - float(d)) for lb, d in zip(labels[0], dists[0], strict=True)]
        return []


class MemIndex:
    """Per-tenant graphs and the metadata to scope and expire their entries."""

    def __init__(self, dim: int, *, capacity: int = 1024) -> None:
        self.dim = dim
        self.graphs: dict[str, Graph] = {}
        self.meta: dict[int, EntryMeta] = {}
        self.exact: dict[str, int] = {}
        self.groups: dict[GroupKey, set[int]] = {}
        self.tenants: dict[str, set[int]] = {}
        self.rows = VectorRows(dim, capacity)
        # Group/tenant key -> (ids, slots) arrays for exact search; dropped on change.
        self._arrays_cache: dict[object, IdsSlots] = {}
        # (category, tenant) -> [live entries, bytes], kept up to date for cheap stats.
        self.totals: dict[tuple[str, str], list[int]] = {}
        self._expiry: list[tuple[float, int]] = []  # heap; stale items skipped when popped

    def _graph(self, tenant: str) -> Graph:
        g = self.graphs.get(tenant)
        if g is None:
            g = self.graphs[tenant] = Graph(self.dim)
        return g

    # -- mutation ---------------------------------------------------------------------
    def add(self, metas: list[EntryMeta], vectors: npt.NDArray[np.float32]) -> int:
        """Adds entries not already present; returns how many were new."""
        keep = [i for i, m in enumerate(metas) if m.entry_id not in self.meta]
        if not keep:
            return 0
        vecs = _unit(vectors[keep])
        by_tenant: dict[str, list[int]] = {}
        for j, i in enumerate(keep):
            by_tenant.setdefault(metas[i].tenant, []).append(j)
        for tenant, js in by_tenant.items():
            ids = np.array([metas[keep[j]].entry_id for j in js], dtype=np.int64)
            self._graph(tenant).add(vecs[js], ids)
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
        self._arrays_cache.pop(m.group, None)
        self._arrays_cache.pop(m.tenant, None)
        total = self.totals.setdefault((m.category, m.tenant), [0, 0])
        total[0] += 1
        total[1] += m.nbytes

    def remove(self, entry_ids: list[int]) -> list[EntryMeta]:
        """Forgets entries (idempotent); their graph slots become reusable."""
        gone: list[EntryMeta] = []
        for eid in entry_ids:
            m = self.meta.pop(eid, None)
            if m is None:
                continue
            self._graph(m.tenant).delete(eid)
            self.rows.release(m.slot)
            if self.exact.get(m.exact_hash) == eid:
                del self.exact[m.exact_hash]
            _discard(self.groups, m.group, eid)
            _discard(self.tenants, m.tenant, eid)
            self._arrays_cache.pop(m.group, None)
            self._arrays_cache.pop(m.tenant, None)
            total = self.totals[(m.category, m.tenant)]
            total[0] -= 1
            total[1] -= m.nbytes
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
    def vectors(self, cands: list[tuple[int, float]]) -> npt.NDArray[np.float32]:
        """The stored vectors of ``(entry id, similarity)`` candidates, one row each."""
        slots = np.fromiter((self.meta[eid].slot for eid, _ in cands), np.int64, len(cands))
        return self.rows.take(slots)

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
        return self._search(
            group, group[0], members, vector, k, floor, lambda m: m.expires_at > now, filtered=True
        )

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

        return self._search(tenant, tenant, members, vector, k, floor, ok, filtered=False)

    def _search(
        self,
        key: object,
        tenant: str,
        members: set[int],
        vector: Vector,
        k: int,
        floor: float,
        ok: _Pred,
        *,
        filtered: bool,
    ) -> list[tuple[int, float]]:
        q = _unit(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if len(members) <= BRUTE_FORCE_MAX:
            ids, slots = self._arrays(key, members)
            sims = self.rows.dot(slots, q[0])
            top = np.flatnonzero(sims >= floor)
            top = top[np.argsort(-sims[top])[: k * 4]]
            pairs = [(int(ids[i]), float(sims[i])) for i in top]
        else:
            pairs = self._graph(tenant).knn(q, k * 4, members if filtered else None)
        out = [(eid, s) for eid, s in pairs if s >= floor and ok(self.meta[eid])]
        return out[:k]

    def _arrays(self, key: object, members: set[int]) -> IdsSlots:
        """Ids and slots of a group as arrays, cached until the group changes."""
        got = self._arrays_cache.get(key)
        if got is None:
            ids = np.fromiter(members, dtype=np.int64, count=len(members))
            meta = self.meta
            slots = np.fromiter((meta[i].slot for i in members), np.int64, len(members))
            got = self._arrays_cache[key] = (ids, slots)
        return got

    # -- snapshot ---------------------------------------------------------------------
    def save_graphs(
        self, directory: Path
    ) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Writes ``graph-<i>.bin`` per tenant; returns the tenants, then the live labels,
        their tenant numbers and their vectors (same order)."""
        tenants = sorted(self.graphs)
        for i, tenant in enumerate(tenants):
            self.graphs[tenant].index.save_index(str(directory / f"graph-{i}.bin"))
        number = {t: i for i, t in enumerate(tenants)}
        n = len(self.meta)
        labels = np.fromiter(self.meta, dtype=np.int64, count=n)
        owner = np.fromiter((number[m.tenant] for m in self.meta.values()), np.int32, n)
        slots = np.fromiter((m.slot for m in self.meta.values()), np.int64, n)
        return tenants, labels, owner, self.rows.take(slots)

    def load_graphs(
        self,
        directory: Path,
        tenants: list[str],
        owner: npt.NDArray[np.int32],
    ) -> None:
        """Replaces the graphs with saved ones; ``owner``: the tenant number of each live
        label in the snapshot (to size the graphs). Then :meth:`restore`."""
        counts = np.bincount(owner, minlength=len(tenants))
        graphs = {}
        for i, tenant in enumerate(tenants):
            index = hnswlib.Index(space="ip", dim=self.dim)
            index.load_index(
                str(directory / f"graph-{i}.bin"),
                max_elements=max(2 * int(counts[i]), 256),
                allow_replace_deleted=True,
            )
            graphs[tenant] = Graph(self.dim, index=index)
            graphs[tenant].live = int(counts[i])
        self.graphs = graphs

    def restore(
        self,
        metas: list[EntryMeta],
        rows: npt.NDArray[np.int64],
        stale: list[tuple[int, str]],
        vectors: npt.NDArray[np.float32],
        loaded: int,
    ) -> None:
        """After :meth:`load_graphs` on an empty index: attaches the metadata of the
        snapshot labels still live (``rows``: their rows in ``vectors``, whose first
        ``loaded`` rows are the snapshot's vectors and the rest room to grow; it becomes the
        vector rows as is, the rows of no live label free slots)
        and marks the ``stale`` (label, tenant) pairs deleted in their graphs.

        In bulk, not entry by entry: at 1M entries one :meth:`_remember` per entry took
        24 s of a 46 s start-up on the loaded 2-core host.
        """
        if self.meta:
            raise CacheError("restore needs an empty index")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(rows) != len(metas):
            raise CacheError(f"snapshot vectors {vectors.shape} do not match dim {self.dim}")
        self.rows.take_over(vectors, loaded, rows)
        for label, tenant in stale:
            self._graph(tenant).delete(label)
        meta, exact, groups, tenants = self.meta, self.exact, self.groups, self.tenants
        counts: dict[tuple[str, str], list[int]] = {}
        for m, slot in zip(metas, rows.tolist(), strict=True):
            eid = m.entry_id
            m.slot = slot
            meta[eid] = m
            exact[m.exact_hash] = eid
            key = (m.tenant, m.model_alias, m.fingerprint)
            members = groups.get(key)
            if members is None:
                members = groups[key] = set()
            members.add(eid)
            members = tenants.get(m.tenant)
            if members is None:
                members = tenants[m.tenant] = set()
            members.add(eid)
            total = counts.get((m.category, m.tenant))
            if total is None:
                total = counts[(m.category, m.tenant)] = [0, 0]
            total[0] += 1
            total[1] += m.nbytes
        self.totals = counts
        self._expiry = [(m.expires_at, m.entry_id) for m in metas]
        heapq.heapify(self._expiry)
        self._arrays_cache.clear()


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
            size = max(2 * len(self.data), self.used + fresh)
            grown = np.zeros((size, self.data.shape[1]), dtype=np.float32)
            grown[: self.used] = self.data[: self.used]
            self.data = grown
        slots += range(self.used, self.used + fresh)
        self.used += fresh
        self.data[slots] = vecs
        return slots

    def release(self, slot: int) -> None:
        self.free.append(slot)

    def take_over(
        self, data: npt.NDArray[np.float32], loaded: int, used: npt.NDArray[np.int64]
    ) -> None:
        """Makes ``data`` the rows, not copied (1.5 GB at 1M entries): its first ``loaded``
        rows hold a snapshot's vectors, of which ``used`` are live (the others become free
        slots); the rows after them are room to grow. Growing copies every row on the
        index thread, which held lookups for 6 s at 1M entries, hence the room."""
        if self.used:
            raise CacheError("take_over needs empty vector rows")
        if data.dtype != np.float32 or not data.flags.c_contiguous or len(data) < loaded:
            raise CacheError("vector rows must be C-contiguous float32 holding the loaded rows")
        self.data = data
        self.used = loaded
        live = np.zeros(loaded, dtype=bool)
        live[used] = True
        self.free = np.flatnonzero(~live).tolist()

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
