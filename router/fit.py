"""Fitting the learned model from arrays (numpy only; no scikit-learn).

Kept apart from :mod:`router.train` (files, embedding, reports) so the bench
can fit on a split of pre-embedded data with exactly the trainer's code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from router.calibrate import calibrate_threshold
from router.errors import RouterConfigError, RouterDataError
from router.model import (
    F32,
    KINDS,
    LR_STRENGTHS,
    SIGNALS,
    LearnedModel,
    OutcomeMemory,
    lr_design,
    principal_basis,
    project,
    round_trip,
    stack_design,
    stack_width,
)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FitParams:
    #: L2 strengths of the stacker's two heads (P(tiers differ), P(small right | they
    #: differ)), one pair per ensemble member: the score averages the members, so no
    #: single strength has to be picked on data this noisy.
    stack_l2: tuple[tuple[float, float], ...] = ((100.0, 30.0), (300.0, 100.0), (1000.0, 300.0))
    knn_k: int = 100
    knn_tau: float = 0.07
    group_tau: float = 0.03
    min_group_rows: int = 10
    folds: int = 5
    #: kNN memory rows kept (seeded subsample): 4,800 × 128 int8 ≈ 0.6 MB.
    memory_size: int = 4800
    #: Width of the kNN memory after projection onto its principal directions (0 or
    #: the vector width: no projection). A decision reads rows × this many floats.
    memory_dims: int = 128
    min_category_rows: int = 20
    default_large_share: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        pairs = self.stack_l2
        if not pairs or any(
            len(pair) != 2 or not all(isinstance(x, int | float) and x > 0 for x in pair)
            for pair in pairs
        ):
            raise RouterConfigError(
                f"stack_l2 must hold (differ, small) pairs of numbers > 0, got {pairs!r}"
            )
        if self.folds < 2 or self.knn_k < 1 or self.memory_size < 1 or self.memory_dims < 0:
            raise RouterConfigError(
                "folds must be >= 2, knn_k and memory_size >= 1, memory_dims >= 0"
            )


@dataclass(frozen=True)
class FitArrays:
    """Training rows: unit vectors, outcomes (NaN = unobserved), lengths, labels."""

    vectors: F32
    small_ok: F64
    large_ok: F64
    prompt_tokens: F64
    categories: Sequence[str]
    #: Topic groups for the per-group prior (a subject; the category when unknown).
    groups: Sequence[str]
    cache_max_sim: F32


@dataclass(frozen=True)
class FitResult:
    model: LearnedModel
    #: Out-of-fold scores per kind (each row scored by models that never saw it).
    oof_scores: dict[str, F32]
    small_ok: F64  # with unobserved outcomes filled by the tier's mean
    large_ok: F64


def fit_logistic(design: F32, target: F64, l2: float, weight: F64 | None = None) -> F32:
    """L2-regularised logistic regression on soft targets by Newton steps (bias
    unpenalised); ``weight`` scales each row's loss (default 1)."""
    a = design.astype(np.float64)
    wt = np.ones(a.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(30):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a @ w)))
        grad = a.T @ (wt * (p - target)) + penalty * w
        hess = (a * (wt * p * (1 - p))[:, None]).T @ a + np.diag(penalty + 1e-6)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w.astype(np.float32)


def _impute(values: F64, name: str) -> F64:
    seen = values[~np.isnan(values)]
    if seen.size == 0:
        raise RouterDataError(f"no record has {name}: cannot learn what that tier is worth")
    return np.where(np.isnan(values), seen.mean(), values)


def _heads(design: F32, outcome: F64, rows: npt.NDArray[np.bool_]) -> F32:
    """One logistic head per strength, fitted on the rows where the outcome was observed."""
    use = rows & ~np.isnan(outcome)
    return np.stack([fit_logistic(design[use], outcome[use], l2) for l2 in LR_STRENGTHS])


def _memory(
    vectors: F32, small: F64, large: F64, size: int, dims: int, rng: np.random.Generator
) -> OutcomeMemory:
    keep = np.arange(vectors.shape[0])
    if keep.size > size:
        keep = np.sort(rng.choice(keep, size=size, replace=False))
    rows = vectors[keep]
    basis = principal_basis(rows, dims)
    return OutcomeMemory(
        vectors=round_trip(rows if basis is None else project(rows, basis)),
        small_ok=small[keep].astype(np.float32),
        large_ok=large[keep].astype(np.float32),
        basis=basis,
    )


def _groups(
    vectors: F32, small: F64, large: F64, labels: npt.NDArray[np.str_], min_rows: int
) -> OutcomeMemory:
    names = [g for g, m in sorted(Counter(labels.tolist()).items()) if m >= min_rows]
    masks = [labels == g for g in names] or [np.ones(labels.size, dtype=bool)]
    centroids = np.stack([vectors[m].mean(axis=0) for m in masks])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
    return OutcomeMemory(
        vectors=round_trip(centroids.astype(np.float32)),
        small_ok=np.array([small[m].mean() for m in masks], dtype=np.float32),
        large_ok=np.array([large[m].mean() for m in masks], dtype=np.float32),
    )


def fit_model(rows: FitArrays, params: FitParams | None = None) -> FitResult:
    p = params or FitParams()
    n = rows.vectors.shape[0]
    if n < 2 * p.folds:
        raise RouterDataError(f"need at least {2 * p.folds} records to train, got {n}")
    small, large = _impute(rows.small_ok, "small_ok"), _impute(rows.large_ok, "large_ok")
    rng = np.random.default_rng(p.seed)
    fold = rng.permutation(n) % p.folds
    design = lr_design(rows.vectors, rows.prompt_tokens)
    labels = np.array(rows.groups, dtype=np.str_)
    counts = Counter(rows.categories)
    categories = tuple(sorted(c for c, m in counts.items() if m >= p.min_category_rows))
    cats = list(rows.categories)

    def partial(train: npt.NDArray[np.bool_]) -> LearnedModel:
        """Everything but the stacker, fitted on ``train`` rows."""
        return LearnedModel(
            lr_small=_heads(design, rows.small_ok, train),
            lr_large=_heads(design, rows.large_ok, train),
            memory=_memory(
                rows.vectors[train], small[train], large[train], p.memory_size, p.memory_dims, rng
            ),
            groups=_groups(
                rows.vectors[train], small[train], large[train], labels[train], p.min_group_rows
            ),
            knn_k=p.knn_k,
            knn_tau=p.knn_tau,
            group_tau=p.group_tau,
            categories=categories,
            stack_mean=np.zeros(len(SIGNALS), dtype=np.float32),
            stack_scale=np.ones(len(SIGNALS), dtype=np.float32),
            stack_low=np.full(len(SIGNALS), -np.inf, dtype=np.float32),
            stack_high=np.full(len(SIGNALS), np.inf, dtype=np.float32),
            stack_differ=np.zeros((1, stack_width(len(categories))), dtype=np.float32),
            stack_small_if_differ=np.zeros((1, stack_width(len(categories))), dtype=np.float32),
            default_thresholds=(0.5, 0.5, 0.5),
        )

    oof = np.zeros((n, len(SIGNALS)), dtype=np.float32)
    for f in range(p.folds):
        test = fold == f
        oof[test] = partial(~test).signals(
            rows.vectors[test], rows.prompt_tokens[test], rows.cache_max_sim[test]
        )
    mean = oof.mean(axis=0)
    scale = oof.std(axis=0)
    scale = np.where(scale < 1e-6, 1.0, scale).astype(np.float32)
    sdesign = stack_design(oof, mean, scale, categories, cats)
    heads = [_stack_heads(sdesign, small, large, l2) for l2 in p.stack_l2]
    final = partial(np.ones(n, dtype=bool))
    stacked = replace(
        final,
        stack_mean=mean,
        stack_scale=scale,
        stack_low=oof.min(axis=0),
        stack_high=oof.max(axis=0),
        stack_differ=np.stack([d for d, _ in heads]),
        stack_small_if_differ=np.stack([q for _, q in heads]),
    )
    oof_scores = {kind: stacked.scores(kind, oof, cats) for kind in KINDS}
    a, b, c = (calibrate_threshold(oof_scores[k].tolist(), p.default_large_share) for k in KINDS)
    model = replace(stacked, default_thresholds=(a, b, c))
    return FitResult(model=model, oof_scores=oof_scores, small_ok=small, large_ok=large)


def _factored_targets(small: F64, large: F64) -> tuple[F64, F64]:
    """P(the outcomes differ) and P(small is right | they differ), per row, for outcomes
    in [0, 1] taken as independent probabilities (exact for 0/1 outcomes; an
    unobserved outcome was filled with its tier's mean)."""
    only_small = small * (1.0 - large)
    differ = only_small + large * (1.0 - small)
    share = np.divide(only_small, differ, out=np.full_like(differ, 0.5), where=differ > 0)
    return differ, share


def _stack_heads(design: F32, small: F64, large: F64, l2: tuple[float, float]) -> tuple[F32, F32]:
    differ, share = _factored_targets(small, large)
    # The second head learns only where the tiers differ: rows weighted by P(differ).
    return fit_logistic(design, differ, l2[0]), fit_logistic(design, share, l2[1], differ)
