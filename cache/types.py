"""Value objects that cross the cache's public boundary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from cache.errors import CacheError

Tier = Literal["small", "large"]
TIERS: tuple[Tier, ...] = ("small", "large")
Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class CacheScope:
    """What must match for a hit: tenant, model alias asked for, context fingerprint.

    The proxy computes ``fingerprint`` from the system prompt, earlier turns, tools,
    response_format and the sampling parameters the category's policy names.
    """

    tenant: str
    model_alias: str
    fingerprint: str = ""

    def __post_init__(self) -> None:
        for name in ("tenant", "model_alias", "fingerprint"):
            if not isinstance(getattr(self, name), str):
                raise CacheError(f"{name} must be a string")
        if not self.tenant:
            raise CacheError("tenant must not be empty")
        if not self.model_alias:
            raise CacheError("model_alias must not be empty")


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A complete, successful answer to store (the proxy decides what qualifies)."""

    scope: CacheScope
    category: str
    text: str
    vector: Vector
    response: dict[str, Any]
    backend: str
    tier: Tier
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: :attr:`SemanticCache.flushes` when the request was looked up: an answer asked
    #: before a flush that covers it is not stored (``None``: no such check).
    asked_at_flush: int | None = None
    #: False when the answer depends on more than ``text`` (earlier turns of a
    #: follow-up, the tool results of an agent step), so it must never be shown as an in-context example.
    example_ok: bool = True

    def __post_init__(self) -> None:
        if not self.category:
            raise CacheError("category must not be empty")
        if not isinstance(self.text, str):
            raise CacheError("text must be a string")
        if self.tier not in TIERS:
            raise CacheError(f"tier must be one of {TIERS}, got {self.tier!r}")
        if self.prompt_tokens < 0 or self.completion_tokens < 0:
            raise CacheError("prompt_tokens and completion_tokens must be >= 0")
        if not isinstance(self.response, dict):
            raise CacheError("response must be a dict (the OpenAI response JSON)")


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A stored answer served for a lookup."""

    entry_id: int
    similarity: float
    exact: bool
    category: str
    response: dict[str, Any]
    backend: str
    tier: Tier
    prompt_tokens: int
    completion_tokens: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A past (request, answer) pair offered to the router as an in-context example."""

    entry_id: int
    similarity: float
    request_text: str
    answer_text: str
    tier: Tier
    utility: float
    model_alias: str
    example_ok: bool = True  # False: routing may read it, examples may not


@dataclass(frozen=True, slots=True)
class CategoryStats:
    """Counters for one (category, tenant). Entries/bytes are live now; the rest are
    counted by this process since it started."""

    category: str
    tenant: str
    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One stored entry as the admin API lists it (without the vector)."""

    entry_id: int
    tenant: str
    model_alias: str
    fingerprint: str
    category: str
    request_text: str
    backend: str
    tier: Tier
    prompt_tokens: int
    completion_tokens: int
    created_at: float
    expires_at: float
    last_hit_at: float | None
    hit_count: int
    feedback_score: float | None
    utility: float
    example_ok: bool = True  # may be an in-context example (its question stands alone)


@dataclass(frozen=True, slots=True)
class CacheCounters:
    """Process-wide health counters (for metrics)."""

    entries: int
    submitted: int
    dropped_queue_full: int
    dropped_store_error: int
    store_errors: int
    store_available: bool
    last_seq: int
    index_capacity: int
    #: ``False`` once another replica gave the store another embedder's vector space:
    #: the cache then stops serving (``SemanticCache.space_lost`` says why).
    space_current: bool = True
    #: Equivalence verdicts on semantic candidates so far, by outcome (``accepted``,
    #: ``below_threshold``, ``identical``, ``veto_<kind>``).
    verdicts: Mapping[str, int] = field(default_factory=dict)
