"""The learned head: multinomial logistic regression over sentence vectors, in numpy.

Fitted by full-batch accelerated gradient descent (FISTA-style Nesterov
momentum with a step from the Lipschitz bound) on standardised features with
class-balanced weights and an L2 penalty. Standardisation is folded back into
the weights, so scoring one vector is one ``(d,) @ (d, k)`` product plus a bias.
Thousands of examples fit in about a second on one core, which is what lets
the classifier retrain at run time when categories or examples change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from classifier.errors import InputError

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class HeadConfig:
    """Fitting knobs; the defaults were chosen on the dev split (scripts/train_classifier.py)."""

    l2: float = 1e-2
    iterations: int = 150
    balanced: bool = True
    whiten_floor: float = 1e-3
    clusters: int = 8
    per_cluster: int = 40
    # Logits are divided by this after fitting. Left at 1: sharpening the head to
    # in-distribution calibration (T≈0.6) made it over-confident on real chat
    # prompts and drowned the text signals (bench/classifier_eval.py).
    temperature: float = 1.0
    # Weight of a definition's example relative to a corpus row: the examples are
    # few but written for the category, the corpus is many rows of one data set.
    example_weight: float = 4.0

    def __post_init__(self) -> None:
        if self.l2 < 0:
            raise InputError(f"l2 must be >= 0, got {self.l2}")
        if self.iterations < 1:
            raise InputError(f"iterations must be >= 1, got {self.iterations}")
        if self.example_weight <= 0:
            raise InputError(f"example_weight must be > 0, got {self.example_weight}")
        if self.temperature <= 0:
            raise InputError(f"temperature must be > 0, got {self.temperature}")
        if self.clusters < 1 or self.per_cluster < 1:
            raise InputError("clusters and per_cluster must be >= 1")


@dataclass(frozen=True)
class LinearHead:
    """Scores ``x @ weights + bias``; rows of ``weights.T`` follow ``labels``."""

    labels: tuple[str, ...]
    weights: F32  # (d, k)
    bias: F32  # (k,)

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def logits(self, x: F32) -> F32:
        return np.asarray(x @ self.weights + self.bias, dtype=np.float32)

    def probabilities(self, x: F32) -> F32:
        return softmax(self.logits(x))


def softmax(z: F32) -> F32:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float32)


def fit_head(
    x: F32,
    y: I64,
    labels: tuple[str, ...],
    config: HeadConfig = HeadConfig(),
    sample_weight: F32 | None = None,
) -> LinearHead:
    """Fit a softmax regression of ``y`` (indices into ``labels``) on rows of ``x``."""
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise InputError(f"fit_head needs x (n, d) and y (n,), got {x.shape} and {y.shape}")
    n, d = x.shape
    k = len(labels)
    if n == 0 or k < 2:
        raise InputError(f"fit_head needs examples of at least two categories, got n={n} k={k}")
    mean = x.mean(axis=0, dtype=np.float64)
    # Whitening (PCA, eigenvalues floored) makes the problem well conditioned, so a
    # few hundred plain gradient steps converge; it is folded into the weights below.
    cov = np.cov(x.astype(np.float64), rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    floor = config.whiten_floor * float(evals.max())
    proj = (evecs / np.sqrt(np.maximum(evals, floor))).astype(np.float32)
    xs = (x - mean.astype(np.float32)) @ proj
    onehot = np.zeros((n, k), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0
    w_row = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)
    if config.balanced:
        counts = np.bincount(y, weights=w_row, minlength=k)
        present = counts > 0
        per_class = np.where(present, w_row.sum() / (present.sum() * np.maximum(counts, 1e-12)), 0)
        w_row = w_row * per_class[y]
    w_row = w_row / w_row.sum()
    # Lipschitz bound of the weighted softmax loss: 0.5 * largest eigenvalue of the
    # weighted (bias-augmented) Gram matrix, found by a few power iterations.
    lipschitz = 0.5 * _top_eigenvalue(xs, w_row) + config.l2
    step = np.float32(1.0 / lipschitz)
    w_row = w_row.astype(np.float32)
    w = np.zeros((d, k), dtype=np.float32)
    b = np.zeros(k, dtype=np.float32)
    w_prev, b_prev = w, b
    t = 1.0
    for _ in range(config.iterations):
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        momentum = np.float32((t - 1) / t_next)
        vw = w + momentum * (w - w_prev)
        vb = b + momentum * (b - b_prev)
        z = xs @ vw + vb
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * w_row[:, None]
        w_prev, b_prev = w, b
        w = vw - step * (xs.T @ g + np.float32(config.l2) * vw)
        b = vb - step * g.sum(axis=0)
        t = t_next
    weights = proj.astype(np.float64) @ w / config.temperature
    bias = b / config.temperature - mean @ weights
    return LinearHead(labels, weights.astype(np.float32), bias.astype(np.float32))


def _top_eigenvalue(xs: F32, w_row: npt.NDArray[np.float64]) -> float:
    rng = np.random.default_rng(0)
    v = rng.standard_normal(xs.shape[1] + 1)
    value = 1.0
    for _ in range(20):
        u = xs @ v[:-1] + v[-1]
        u *= w_row
        nv = np.concatenate([xs.T @ u, [u.sum()]])
        value = float(np.linalg.norm(nv))
        v = nv / max(value, 1e-12)
    return value


@dataclass(frozen=True)
class MixtureHead:
    """A softmax over sub-clusters of each category, summed back per category.

    One weight vector per category cannot carve out a category that is a union
    of unrelated clusters (``general`` is banking *and* alarms *and* music); a
    few k-means sub-clusters per category fix that while staying linear and
    cheap: scoring is one ``(d,) @ (d, s)`` product with s ≈ 4k.
    """

    labels: tuple[str, ...]
    linear: LinearHead
    parent: I64  # (s,) category index of each sub-cluster
    # (s, k) 0/1 matrix summing sub-cluster probabilities into categories.
    pooling: F32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = np.zeros((len(self.parent), len(self.labels)), dtype=np.float32)
        m[np.arange(len(self.parent)), self.parent] = 1.0
        object.__setattr__(self, "pooling", m)

    @property
    def dim(self) -> int:
        return self.linear.dim

    def probabilities(self, x: F32) -> F32:
        return np.asarray(self.linear.probabilities(x) @ self.pooling, dtype=np.float32)


def fit_mixture_head(
    x: F32,
    y: I64,
    labels: tuple[str, ...],
    config: HeadConfig = HeadConfig(),
    sample_weight: F32 | None = None,
) -> MixtureHead:
    """Split each category into up to ``config.clusters`` k-means sub-clusters (one per
    ``config.per_cluster`` examples) and fit a softmax over all of them."""
    sub = np.zeros(len(y), dtype=np.int64)
    parent: list[int] = []
    for k in range(len(labels)):
        rows = np.flatnonzero(y == k)
        if rows.size == 0:
            continue
        n_sub = max(1, min(config.clusters, rows.size // config.per_cluster))
        assign = kmeans_assign(x[rows], n_sub, seed=k)
        for j in range(int(assign.max()) + 1):
            sub[rows[assign == j]] = len(parent)
            parent.append(k)
    if len(set(parent)) < 2:
        raise InputError("fit_mixture_head needs examples of at least two categories")
    names = tuple(f"{labels[p]}#{i}" for i, p in enumerate(parent))
    linear = fit_head(x, sub, names, config, sample_weight)
    return MixtureHead(labels, linear, np.asarray(parent, dtype=np.int64))


def kmeans_assign(x: F32, k: int, *, seed: int = 0, iterations: int = 15) -> I64:
    """Spherical k-means cluster index of each row (k-means++-free: rows are unit vectors
    and a seeded random start is good enough for splitting a category)."""
    if k <= 1 or len(x) <= k:
        return np.zeros(len(x), dtype=np.int64) if k <= 1 else np.arange(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)].copy()
    assign = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        assign = np.asarray((x @ centres.T).argmax(axis=1), dtype=np.int64)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c = members.sum(axis=0)
                centres[j] = c / max(float(np.linalg.norm(c)), 1e-12)
    # Empty clusters would leave a sub-class without examples: renumber densely.
    _, dense = np.unique(assign, return_inverse=True)
    return np.asarray(dense, dtype=np.int64)
