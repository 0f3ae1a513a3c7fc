"""The stacker's factored heads and the fit parameters."""

from __future__ import annotations

import numpy as np
import pytest

from router import FitParams, RouterConfigError
from router.fit import _factored_targets
from router.model import (
    OutcomeMemory,
    factored_score,
    knn_rates,
    round_trip,
    stack_design,
    stack_width,
)


def test_factored_targets_and_score_give_the_expected_gain() -> None:
    small = np.array([1.0, 0.0, 1.0, 0.0, 0.7])
    large = np.array([0.0, 1.0, 1.0, 0.0, 0.9])
    differ, share = _factored_targets(small, large)
    assert differ[:4].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert share[:2].tolist() == [1.0, 0.0]
    # Score = (1 + P(small ok) - P(large ok)) / 2, whatever the outcomes' values.
    assert factored_score(differ, share) == pytest.approx((1 + small - large) / 2)
    # Ensemble members (columns) are averaged.
    both = factored_score(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]]))
    assert both == pytest.approx([0.75])


def test_stack_design_width_matches_the_artifact_shape() -> None:
    signals = np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32)
    mean, scale = np.zeros(10, np.float32), np.ones(10, np.float32)
    design = stack_design(signals, mean, scale, ("math",), ["math", "code", "math"])
    assert design.shape == (3, stack_width(1))
    assert design[:, -1].tolist() == [1.0, 1.0, 1.0]
    assert design[:, -2].tolist() == [1.0, 0.0, 1.0]  # the category one-hot


@pytest.mark.parametrize(
    "fields", [{"stack_l2": ()}, {"stack_l2": ((1.0, 0.0),)}, {"folds": 1}, {"knn_k": 0}]
)
def test_fit_params_refuse_bad_values(fields: dict[str, object]) -> None:
    with pytest.raises(RouterConfigError):
        FitParams(**fields)  # type: ignore[arg-type]


def test_knn_leaves_out_the_query_itself() -> None:
    """A training prompt scored again reads its neighbours' outcomes, not its own
    (the stacker was fitted on out-of-fold values, where no row meets itself)."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    small = np.array([1, 0, 0, 1, 0, 1], dtype=np.float32)
    memory = OutcomeMemory(round_trip(vectors), small, 1.0 - small)
    others = OutcomeMemory(round_trip(vectors[1:]), small[1:], 1.0 - small[1:])
    assert knn_rates(memory, vectors[:1], 3, 0.1) == pytest.approx(
        knn_rates(others, vectors[:1], 3, 0.1)
    )
