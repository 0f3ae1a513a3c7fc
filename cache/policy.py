"""Per-category cache policies, validated where they are built."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from cache.errors import PolicyError

Eviction = Literal["lru", "lfu", "fifo"]
EVICTIONS: tuple[Eviction, ...] = ("lru", "lfu", "fifo")


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True, slots=True)
class CategoryPolicy:
    """How one category is cached.

    ``similarity_threshold`` is the cosine floor for semantic candidates;
    ``equivalence_threshold`` is handed to the equivalence checker (``None`` means the
    checker's own default; 0 is a real threshold). ``threshold_floor`` and
    ``ttl_max_factor`` bound how far load adaptation may relax the policy, and
    ``equivalence_floor`` the lowest equivalence threshold it may use (``None``: the
    category's equivalence threshold never relaxes). A relaxed equivalence threshold
    only pays where the checker's precision stays high below its default: fit it per
    category (``bench/adaptive.py band``), never one figure for all.

    ``ttl_stretch`` is not configured: load adaptation sets it on the *effective*
    policy (1 ≤ stretch ≤ ``ttl_max_factor``) and it acts at read time only. Entries
    are always written with ``ttl_seconds``; while the stretch is above 1 a lookup of
    this category may also serve an entry of the same category up to ``ttl_stretch``
    × its TTL after it was stored (stale-while-overloaded). Writing with a stretched
    TTL instead would make answers stored during an overload outlive it.
    """

    enabled: bool = True
    similarity_threshold: float = 0.90
    equivalence_threshold: float | None = None
    ttl_seconds: float = 86_400.0
    max_entries: int = 100_000
    eviction: Eviction = "lru"
    cache_streams: bool = True
    cache_tool_calls: bool = True
    sampling_params: tuple[str, ...] = ("temperature", "top_p", "seed", "max_tokens")
    threshold_floor: float | None = None
    ttl_max_factor: float = 1.0
    equivalence_floor: float | None = None
    ttl_stretch: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise PolicyError(f"enabled must be a bool, got {self.enabled!r}")
        if not isinstance(self.cache_streams, bool):
            raise PolicyError(f"cache_streams must be a bool, got {self.cache_streams!r}")
        if not isinstance(self.cache_tool_calls, bool):
            raise PolicyError(f"cache_tool_calls must be a bool, got {self.cache_tool_calls!r}")
        _finite("similarity_threshold", self.similarity_threshold)
        if not 0.0 < self.similarity_threshold <= 1.0:
            raise PolicyError(
                f"similarity_threshold must be in (0, 1], got {self.similarity_threshold!r}"
            )
        if self.equivalence_threshold is not None:
            _finite("equivalence_threshold", self.equivalence_threshold)
            if not 0.0 <= self.equivalence_threshold <= 1.0:
                raise PolicyError(
                    f"equivalence_threshold must be in [0, 1] or None, "
                    f"got {self.equivalence_threshold!r}"
                )
        _finite("ttl_seconds", self.ttl_seconds)
        if self.ttl_seconds <= 0:
            raise PolicyError(f"ttl_seconds must be > 0, got {self.ttl_seconds!r}")
        if isinstance(self.max_entries, bool) or not isinstance(self.max_entries, int):
            raise PolicyError(f"max_entries must be an int, got {self.max_entries!r}")
        if self.max_entries < 1:
            raise PolicyError(f"max_entries must be >= 1, got {self.max_entries!r}")
        if self.eviction not in EVICTIONS:
            raise PolicyError(f"eviction must be one of {EVICTIONS}, got {self.eviction!r}")
        if not isinstance(self.sampling_params, tuple) or not all(
            isinstance(p, str) and p for p in self.sampling_params
        ):
            raise PolicyError(
                f"sampling_params must be a tuple of non-empty names, got {self.sampling_params!r}"
            )
        if self.threshold_floor is not None:
            _finite("threshold_floor", self.threshold_floor)
            if not 0.0 < self.threshold_floor <= self.similarity_threshold:
                raise PolicyError(
                    f"threshold_floor must be in (0, similarity_threshold="
                    f"{self.similarity_threshold}], got {self.threshold_floor!r}"
                )
        _finite("ttl_max_factor", self.ttl_max_factor)
        if self.ttl_max_factor < 1.0:
            raise PolicyError(f"ttl_max_factor must be >= 1.0, got {self.ttl_max_factor!r}")
        if self.equivalence_floor is not None:
            _finite("equivalence_floor", self.equivalence_floor)
            top = 1.0 if self.equivalence_threshold is None else self.equivalence_threshold
            if not 0.0 <= self.equivalence_floor <= top:
                raise PolicyError(
                    f"equivalence_floor must be in [0, equivalence_threshold={top}], "
                    f"got {self.equivalence_floor!r}"
                )
        _finite("ttl_stretch", self.ttl_stretch)
        if not 1.0 <= self.ttl_stretch <= self.ttl_max_factor:
            raise PolicyError(
                f"ttl_stretch must be in [1, ttl_max_factor={self.ttl_max_factor}], "
                f"got {self.ttl_stretch!r}"
            )


@dataclass(frozen=True, slots=True)
class PolicySet(Mapping[str, CategoryPolicy]):
    """Category name → policy, with ``default`` for categories not listed."""

    policies: Mapping[str, CategoryPolicy] = field(default_factory=dict)
    default: CategoryPolicy = field(default_factory=CategoryPolicy)

    def __post_init__(self) -> None:
        for name, policy in self.policies.items():
            if not isinstance(name, str) or not name:
                raise PolicyError(f"category names must be non-empty strings, got {name!r}")
            if not isinstance(policy, CategoryPolicy):
                raise PolicyError(f"policy for {name!r} must be a CategoryPolicy")
        # Freeze a private copy so a caller mutating its dict cannot change us.
        object.__setattr__(self, "policies", dict(self.policies))

    def __getitem__(self, category: str) -> CategoryPolicy:
        return self.policies[category]

    def __iter__(self) -> Iterator[str]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def for_category(self, category: str) -> CategoryPolicy:
        """The category's policy, or the default for an unknown category."""
        return self.policies.get(category, self.default)
