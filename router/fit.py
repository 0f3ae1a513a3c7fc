"""Fitting the learned model from arrays (numpy only; no scikit-learn).

Kept apart from :mod:`router.train` (files, embedding, reports) so the bench
can fit on a split of pre-embedded data with exactly the trainer's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from router.calibrate import calibrate_threshold
from router.errors import RouterDataError
from router.model import F32, KnnMemory, LearnedModel, lr_design, sigmoid

LEARNED_KINDS = ("blend", "logistic", "knn")


@dataclass(frozen=True)
class FitParams:
    lr_l2: float = 10.0
    stack_l2: float = 1.0
    k: int = 50
    tau: float = 0.05
    folds: int = 5
    memory_size: int = 2400
    min_category_rows: int = 20
    default_large_share: float = 0.3
    seed: int = 0


@dataclass(frozen=True)
class FitArrays:
    """Training rows: unit vectors, outcomes (NaN = unobserved), lengths, categories."""

    vectors: F32
    small_ok: npt.NDArray[np.float64]
    large_ok: npt.NDArray[np.float64]
    prompt_tokens: npt.NDArray[np.float64]
    categories: Sequence[str]
    cache_max_sim: F32


def fit_logistic(design: F32, target: npt.NDArray[np.float64], l2: float) -> F32:
    """L2-regularised logistic regression on soft targets by Newton steps (bias unpenalised)."""
    a = design.astype(np.float64)
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(25):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a @ w)))
        grad = a.T @ (p - target) + penalty * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty) + 1e-6 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w.astype(np.float32)


def _impute(values: npt.NDArray[np.float64], name: str) -> npt.NDArray[np.float64]:
    seen = values[~np.isnan(values)]
    if seen.size == 0:
        raise RouterDataError(f"no record has {name}: cannot learn what that tier is worth")
    return np.where(np.isnan(values), seen.mean(), values)


@dataclass(frozen=True)
class FitResult:
    model: LearnedModel
    #: Out-of-fold scores per learned kind (each row scored by a model that never saw it).
    oof_scores: dict[str, F32]
    small_ok: npt.NDArray[np.float64]
    large_ok: npt.NDArray[np.float64]


def fit_model(rows: FitArrays, params: FitParams = FitParams()) -> FitResult:
    n = rows.vectors.shape[0]
    if n < 2 * params.folds:
        raise RouterDataError(f"need at least {2 * params.folds} records to train, got {n}")
    small = _impute(rows.small_ok, "small_ok")
    large = _impute(rows.large_ok, "large_ok")
    target = 0.5 * (1.0 + small - large)
    rng = np.random.default_rng(params.seed)
    fold = rng.permutation(n) % params.folds
    counts = {c: list(rows.categories).count(c) for c in set(rows.categories)}
    categories = tuple(sorted(c for c, m in counts.items() if m >= params.min_category_rows))
    design = lr_design(rows.vectors, rows.prompt_tokens)

    oof_lr = np.zeros(n, dtype=np.float32)
    oof_knn = np.zeros((n, 4), dtype=np.float32)
    for f in range(params.folds):
        test, train = fold == f, fold != f
        w = fit_logistic(design[train], target[train], params.lr_l2)
        oof_lr[test] = design[test] @ w
        memory = _memory(rows.vectors[train], small[train], large[train], params, rng)
        oof_knn[test] = memory.stats(rows.vectors[test])

    probe = LearnedModel(
        lr_weights=np.zeros(design.shape[1], dtype=np.float32),
        memory=_memory(rows.vectors, small, large, params, rng),
        stack_weights=np.zeros(1, dtype=np.float32),
        categories=categories,
        default_thresholds=(0.5, 0.5, 0.5),
    )
    stack_design = probe.stack_design(oof_lr, oof_knn, rows.cache_max_sim, list(rows.categories))
    stack_w = fit_logistic(stack_design, target, params.stack_l2)
    oof = {
        "blend": sigmoid(stack_design @ stack_w),
        "logistic": sigmoid(oof_lr),
        "knn": oof_knn[:, 0].copy(),
    }
    share = params.default_large_share
    model = LearnedModel(
        lr_weights=fit_logistic(design, target, params.lr_l2),
        memory=probe.memory,
        stack_weights=stack_w,
        categories=categories,
        default_thresholds=(
            calibrate_threshold(oof["blend"].tolist(), share),
            calibrate_threshold(oof["logistic"].tolist(), share),
            calibrate_threshold(oof["knn"].tolist(), share),
        ),
    )
    return FitResult(model=model, oof_scores=oof, small_ok=small, large_ok=large)


def _memory(
    vectors: F32,
    small: npt.NDArray[np.float64],
    large: npt.NDArray[np.float64],
    params: FitParams,
    rng: np.random.Generator,
) -> KnnMemory:
    """A kNN memory, subsampled to ``memory_size`` rows so the artifact stays small."""
    keep = np.arange(vectors.shape[0])
    if keep.size > params.memory_size:
        keep = np.sort(rng.choice(keep, size=params.memory_size, replace=False))
    return KnnMemory(
        vectors=vectors[keep].astype(np.float16),
        small_ok=small[keep].astype(np.float32),
        large_ok=large[keep].astype(np.float32),
        k=params.k,
        tau=params.tau,
    )
