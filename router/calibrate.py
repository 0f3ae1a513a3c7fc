"""Threshold calibration on the user's own traffic (RouteLLM's recipe).

Given the scores the router gave to logged requests, pick the threshold that
would have sent a target share of them to the large model — or the share a
cost budget affords. Scores at or above the threshold go small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from router.errors import RouterConfigError, RouterDataError
from router.types import check_unit


def _checked_scores(scores: Sequence[float]) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise RouterDataError("scores is empty: calibration needs logged requests")
    bad = ~((values >= 0.0) & (values <= 1.0))
    if bad.any():
        raise RouterDataError(f"scores must lie in [0, 1], got {values[bad][0]!r}")
    return values


def calibrate_threshold(scores: Sequence[float], large_share: float) -> float:
    """Threshold sending ``large_share`` of ``scores`` (those below it) to large."""
    share = check_unit(large_share, "large_share")
    values = np.sort(_checked_scores(scores))
    n = values.size
    k = round(share * n)  # how many requests go large
    if k <= 0:
        return float(values[0])
    if k >= n:
        return float(min(1.0, np.nextafter(values[-1], math.inf)))
    # Midway between the last large and the first small score: stable under
    # small shifts of fresh traffic.
    return float((values[k - 1] + values[k]) / 2.0)


def large_share_at(scores: Sequence[float], threshold: float) -> float:
    """Share of ``scores`` a threshold sends to large (score below it)."""
    values = _checked_scores(scores)
    return float(np.mean(values < check_unit(threshold, "threshold")))


def share_for_budget(budget_per_1k: float, small_price: float, large_price: float) -> float:
    """Largest large-model share whose mean cost per 1k requests stays within budget.

    Prices are the mean cost of one request on each tier (same currency as the budget).
    """
    for name, value in (("small_price", small_price), ("large_price", large_price)):
        if not math.isfinite(value) or value < 0:
            raise RouterConfigError(f"{name} must be a finite price >= 0, got {value!r}")
    if large_price <= small_price:
        raise RouterConfigError(
            f"large_price ({large_price!r}) must exceed small_price ({small_price!r})"
        )
    floor = 1000.0 * small_price
    if not math.isfinite(budget_per_1k) or budget_per_1k < floor:
        raise RouterConfigError(
            f"budget_per_1k {budget_per_1k!r} is below the all-small cost {floor!r}"
        )
    share = (budget_per_1k / 1000.0 - small_price) / (large_price - small_price)
    return min(1.0, share)


def calibrate_for_budget(
    scores: Sequence[float], budget_per_1k: float, small_price: float, large_price: float
) -> float:
    """Threshold whose large share fits a cost budget per 1k requests."""
    share = share_for_budget(budget_per_1k, small_price, large_price)
    return calibrate_threshold(scores, share)
