"""The stacker's factored heads and the fit parameters."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from router import FitParams, RouterConfigError
from router.fit import FitArrays, _factored_targets, fit_model
from router.model import (
    OutcomeMemory,
    factored_score,
    knn_rates,
    principal_basis,
    project,
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
    "fields",
    [
        {"stack_l2": ()},
        {"stack_l2": ((1.0, 0.0),)},
        {"folds": 1},
        {"knn_k": 0},
        {"memory_dims": -1},
    ],
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


def test_projected_memory_keeps_neighbours_and_leaves_out_the_query() -> None:
    """A memory projected onto its leading principal directions ranks neighbours as
    the full vectors do (on data that lives near those directions), and a query that
    is a stored row still finds itself at cosine ~1, so it is still left out."""
    rng = np.random.default_rng(2)
    topics = rng.normal(size=(6, 32))
    vectors = (rng.normal(size=(300, 6)) @ topics + 0.05 * rng.normal(size=(300, 32))).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    small = (rng.random(300) < 0.5).astype(np.float32)
    basis = principal_basis(vectors, 8)
    assert basis is not None and basis.shape == (32, 8)
    assert principal_basis(vectors, 0) is None and principal_basis(vectors, 32) is None
    projected = OutcomeMemory(round_trip(project(vectors, basis)), small, 1 - small, basis=basis)
    full = OutcomeMemory(round_trip(vectors), small, 1 - small)
    assert projected.dim == full.dim == 32
    queries = vectors[:20]
    near_p = np.argsort(-projected.similarities(queries), axis=1)[:, 1:6]
    near_f = np.argsort(-full.similarities(queries), axis=1)[:, 1:6]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(near_p, near_f, strict=True)])
    assert overlap > 0.8
    others = OutcomeMemory(
        round_trip(project(vectors[1:], basis)), small[1:], 1 - small[1:], basis=basis
    )
    assert knn_rates(projected, vectors[:1], 5, 0.1) == pytest.approx(
        knn_rates(others, vectors[:1], 5, 0.1)
    )


def test_fit_projects_the_memory_only_when_asked() -> None:
    rng = np.random.default_rng(3)
    n = 120
    vectors = rng.normal(size=(n, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    arrays = FitArrays(
        vectors=vectors,
        small_ok=(rng.random(n) < 0.6).astype(np.float64),
        large_ok=(rng.random(n) < 0.8).astype(np.float64),
        prompt_tokens=rng.integers(5, 200, n).astype(np.float64),
        categories=["general"] * n,
        groups=["g"] * n,
        cache_max_sim=np.zeros(n, dtype=np.float32),
    )
    params = FitParams(knn_k=8, folds=3, min_category_rows=5, min_group_rows=5)
    narrow = fit_model(arrays, replace(params, memory_dims=6)).model.memory
    assert narrow.basis is not None and narrow.vectors.shape == (n, 6) and narrow.dim == 24
    wide = fit_model(arrays, replace(params, memory_dims=0)).model.memory
    assert wide.basis is None and wide.vectors.shape == (n, 24)
