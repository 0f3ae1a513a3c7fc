"""Value types the router takes and returns: plain data, validated where it enters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from router.errors import RouterConfigError

Tier = Literal["small", "large"]
Reason = Literal["router", "override", "fallback", "load", "pinned"]
TIERS: tuple[Tier, Tier] = ("small", "large")


def check_tier(value: str, name: str) -> Tier:
    if value == "small":
        return "small"
    if value == "large":
        return "large"
    raise RouterConfigError(f"{name} must be 'small' or 'large', got {value!r}")


def check_unit(value: float, name: str) -> float:
    """A number in [0, 1]; 0 and 1 are valid (RedisVL's rule: fall back only on None)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise RouterConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise RouterConfigError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RouteFeatures:
    """What the proxy knows about a cache miss when it asks the router.

    ``vector`` is the request's unit-norm embedding (the one the cache searched
    with); ``neighbour_similarities`` are the cosine similarities of the nearest
    stored large-model answers the cache found (best first, may be empty) and
    ``neighbour_utilities`` their learned utilities, when known. The stacked
    model reads the best neighbour similarity (its weight is learned from
    records that carry it, i.e. cachegate's own log; the bundled model was fitted
    on public data without a cache, so there it is 0); utilities ride along for
    logging and retraining.
    """

    vector: npt.NDArray[np.float32]
    category: str = "general"
    prompt_tokens: int = 0
    neighbour_similarities: tuple[float, ...] = ()
    neighbour_utilities: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        vec = np.asarray(self.vector, dtype=np.float32)
        if vec.ndim != 1 or vec.size == 0:
            raise RouterConfigError(f"vector must be 1-d and non-empty, got shape {vec.shape}")
        object.__setattr__(self, "vector", vec)
        if self.prompt_tokens < 0:
            raise RouterConfigError(f"prompt_tokens must be >= 0, got {self.prompt_tokens}")


@dataclass(frozen=True)
class TierLoad:
    """Load view of one tier, as the backend pool sees it right now."""

    healthy: bool = True
    overloaded: bool = False

    @property
    def usable(self) -> bool:
        return self.healthy and not self.overloaded


@dataclass(frozen=True)
class RouteDecision:
    """Where a cache miss goes and why.

    ``reason``: ``router`` (score vs threshold), ``override`` (per-category rule),
    ``pinned`` (the router kind always picks one tier), ``load`` (moved off an
    overloaded tier), ``fallback`` (moved off an unhealthy tier).
    """

    tier: Tier
    reason: Reason
    score: float | None
    threshold: float | None
