"""cachegate's category-aware semantic cache.

Exact tier (hash of the normalised text in its scope) and semantic tier (HNSW, cosine,
scoped by tenant, model alias and context fingerprint), documents in SQL, per-category
policies (threshold, TTL, quota, eviction), multi-replica sync through a change feed,
index snapshots. See :class:`SemanticCache`.
"""

from cache.equivalence import EquivalenceChecker, EquivalenceError, EquivalenceVerdict
from cache.errors import (
    CacheError,
    CacheUnavailable,
    EntryNotFound,
    PolicyError,
    SpaceChanged,
    SpaceMismatch,
)
from cache.inflight import Flight, Follow, InFlight, SharedAnswer
from cache.migrate import migrate, migrate_async
from cache.normalize import exact_key, normalise_text
from cache.policy import EVICTIONS, CategoryPolicy, Eviction, PolicySet
from cache.semantic_cache import Checker, SemanticCache, Verdict
from cache.types import (
    CacheCounters,
    CacheHit,
    CacheScope,
    CategoryStats,
    EntryInfo,
    Neighbour,
    NewEntry,
    Tier,
)
from cache.vector_space import VectorSpace

__all__ = [
    "EVICTIONS",
    "CacheCounters",
    "CacheError",
    "CacheHit",
    "CacheScope",
    "CacheUnavailable",
    "CategoryPolicy",
    "CategoryStats",
    "Checker",
    "EntryInfo",
    "EntryNotFound",
    "EquivalenceChecker",
    "EquivalenceError",
    "EquivalenceVerdict",
    "Eviction",
    "Flight",
    "Follow",
    "InFlight",
    "Neighbour",
    "NewEntry",
    "PolicyError",
    "PolicySet",
    "SemanticCache",
    "SharedAnswer",
    "SpaceChanged",
    "SpaceMismatch",
    "Tier",
    "VectorSpace",
    "Verdict",
    "exact_key",
    "migrate",
    "migrate_async",
    "normalise_text",
]
