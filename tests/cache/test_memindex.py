from __future__ import annotations

import numpy as np

from cache.memindex import BRUTE_FORCE_MAX, EntryMeta, MemIndex


def _meta(eid: int, fingerprint: str = "fp", expires_at: float = 1e12) -> EntryMeta:
    return EntryMeta(entry_id=eid, tenant="t", model_alias="m", fingerprint=fingerprint,
                     category="c", tier="large", exact_hash=f"h{eid}", created_at=0.0,
                     expires_at=expires_at, nbytes=10)  # fmt: skip


def _vecs(n: int, seed: int = 0, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_deleted_slots_are_reused_before_growing() -> None:
    idx = MemIndex(16, capacity=8)
    idx.add([_meta(i) for i in range(8)], _vecs(8))
    assert idx.rows.data.shape[0] == 16
    idx.remove([0, 1, 2])
    idx.add([_meta(i) for i in range(100, 103)], _vecs(3, seed=1))
    graph = idx.graphs["t"].index
    assert graph.get_max_elements() == 256 and graph.get_current_count() == 8
    idx.add([_meta(i) for i in range(300, 550)], _vecs(250, seed=2))  # now it must grow
    assert graph.get_max_elements() > 256 and len(idx.meta) == 258
    assert [m.entry_id for m in idx.remove([0, 300, 300])] == [300]  # 0 was already gone


def test_readding_a_known_id_is_a_no_op() -> None:
    idx = MemIndex(16)
    assert idx.add([_meta(1)], _vecs(1)) == 1
    assert idx.add([_meta(1)], _vecs(1, seed=3)) == 0


def test_large_group_uses_filtered_hnsw_and_stays_scoped() -> None:
    n = BRUTE_FORCE_MAX + 500
    idx = MemIndex(16, capacity=16)
    vecs = _vecs(2 * n)
    idx.add([_meta(i, "big") for i in range(n)], vecs[:n])
    idx.add([_meta(i, "other") for i in range(n, 2 * n)], vecs[n:])
    q = vecs[n + 7]  # an exact copy of an entry of the other group
    got = idx.search_group(("t", "m", "big"), q, 5, -1.0, now=0.0)
    assert len(got) == 5 and all(eid < n for eid, _ in got)
    assert idx.search_group(("t", "m", "other"), q, 1, 0.99, now=0.0)[0][0] == n + 7


def test_expired_and_below_floor_are_not_candidates() -> None:
    idx = MemIndex(16)
    v = _vecs(2)
    idx.add([_meta(1, expires_at=10.0), _meta(2)], v)
    assert [e for e, _ in idx.search_group(("t", "m", "fp"), v[0], 5, 0.99, now=11.0)] == []
    assert idx.exact_match("h1", now=11.0) is None and idx.exact_match("h2", now=11.0)
    assert idx.expired(11.0) == [1]
