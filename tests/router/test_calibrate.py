from __future__ import annotations

import numpy as np
import pytest

from router import (
    RouterError,
    calibrate_for_budget,
    calibrate_threshold,
    large_share_at,
    share_for_budget,
)


@pytest.mark.parametrize("share", [0.2, 0.3, 0.5])
def test_threshold_hits_target_share_on_fresh_scores(share: float) -> None:
    rng = np.random.default_rng(0)
    logged = rng.beta(2, 5, size=5000)  # skewed, like real router scores
    fresh = rng.beta(2, 5, size=5000)
    t = calibrate_threshold(logged.tolist(), share)
    assert large_share_at(logged.tolist(), t) == pytest.approx(share, abs=0.001)
    assert large_share_at(fresh.tolist(), t) == pytest.approx(share, abs=0.03)


def test_extreme_shares() -> None:
    scores = [0.1, 0.4, 0.4, 0.9]
    assert large_share_at(scores, calibrate_threshold(scores, 0.0)) == 0.0
    assert large_share_at(scores, calibrate_threshold(scores, 1.0)) == 1.0


def test_bad_inputs_refused_naming_the_value() -> None:
    with pytest.raises(RouterError, match="large_share"):
        calibrate_threshold([0.5], 1.2)
    with pytest.raises(RouterError, match="empty"):
        calibrate_threshold([], 0.3)
    with pytest.raises(RouterError, match=r"1\.5"):
        calibrate_threshold([0.2, 1.5], 0.3)


def test_budget_sets_the_share() -> None:
    # small costs 0.1, large 1.1 per request: 400 per 1k buys 30 % large.
    assert share_for_budget(400.0, 0.1, 1.1) == pytest.approx(0.3)
    assert share_for_budget(5000.0, 0.1, 1.1) == 1.0
    scores = np.linspace(0, 1, 1001).tolist()
    t = calibrate_for_budget(scores, 400.0, 0.1, 1.1)
    assert large_share_at(scores, t) == pytest.approx(0.3, abs=0.002)


def test_budget_below_all_small_cost_refused() -> None:
    with pytest.raises(RouterError, match="budget_per_1k"):
        share_for_budget(50.0, 0.1, 1.1)
    with pytest.raises(RouterError, match="large_price"):
        share_for_budget(500.0, 1.0, 0.5)
