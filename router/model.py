"""The learned scoring model: two outcome heads over four signals, stacked.

All plain numpy so the runtime needs nothing else. Each signal estimates, for
a request, how likely the small and the large model are to answer well:

* ``lr``: logistic regressions over the request vector and log prompt length
  (two strengths of regularisation per tier);
* ``knn``: similarity-weighted outcome rates of the nearest training requests
  (an int8 memory of their vectors, projected to their leading principal
  directions, and outcomes) — what traffic like this
  needed before;
* ``groups``: outcome rates of topic groups (e.g. MMLU subjects) softly
  assigned by similarity to each group's centroid — a smoothed per-topic prior;
* the best similarity the proxy's cache found among stored large answers.

A stacker fitted on out-of-fold values (so no signal grades its own training
rows) reads the standardised signals, their pairwise products (how much a
topic prior should count depends on how close the neighbours are, etc.) and a
bias per category. Its two logistic heads factor the question the threshold
trades on: D = P(the tiers' outcomes differ) and Q = P(small is the right one
| they differ). The score is ``(1 + D·(2Q − 1)) / 2``, i.e. ``(1 + P(small ok)
− P(large ok)) / 2``: ranking by it is ranking by the expected quality lost by
staying small. Factoring it lets one head learn only from the requests where
the choice matters (a quarter of MMLU), instead of two heads each spending
their fit on requests both tiers get right or wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from router.errors import RouterArtifactError

F32 = npt.NDArray[np.float32]
FORMAT_VERSION = 5
#: Format 5 added an optional projection of the kNN memory (``memory_basis``); a
#: format-4 artifact is a format-5 one without it.
READABLE_FORMATS = (4, 5)
LR_STRENGTHS = (10.0, 30.0)
SIGNALS = ("lr_small", "lr_small_strong_l2", "lr_large", "lr_large_strong_l2",
           "knn_small", "knn_large", "knn_max_sim", "group_small", "group_large", "cache_max_sim")  # fmt: skip
KINDS = ("blend", "logistic", "knn")
#: Above this cosine a memory row counts as the query itself (int8 storage leaves
#: a copy at about 0.999).
SELF_SIMILARITY = 0.995


def sigmoid(x: npt.NDArray[np.floating]) -> F32:
    out: F32 = (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
    return out


def gap_score(p_small: npt.NDArray[np.floating], p_large: npt.NDArray[np.floating]) -> F32:
    out: F32 = np.clip(0.5 * (1.0 + p_small - p_large), 0.0, 1.0).astype(np.float32)
    return out


def factored_score(
    p_differ: npt.NDArray[np.floating], p_small_if_differ: npt.NDArray[np.floating]
) -> F32:
    """The gap score from the factored heads, P(small ok) − P(large ok) = D·(2Q − 1),
    averaged over ensemble members (columns) when given (rows, members)."""
    gap = p_differ * (2.0 * p_small_if_differ - 1.0)
    if gap.ndim == 2:
        gap = gap.mean(axis=1)
    out: F32 = np.clip(0.5 * (1.0 + gap), 0.0, 1.0).astype(np.float32)
    return out


def lr_design(vectors: F32, prompt_tokens: npt.ArrayLike) -> F32:
    """Rows of [vector, log length, 1]."""
    length = np.log1p(np.asarray(prompt_tokens, dtype=np.float32)) / 5.0
    ones = np.ones(vectors.shape[0], dtype=np.float32)
    return np.column_stack([vectors, length, ones]).astype(np.float32)


def quantize(vectors: F32) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float16]]:
    """Rows as int8 codes times a float16 per-row scale."""
    scales = (np.abs(vectors).max(axis=1) / 127.0).astype(np.float16)
    safe = np.where(scales == 0, 1.0, scales.astype(np.float32))
    codes = np.clip(np.rint(vectors / safe[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def dequantize(codes: npt.NDArray[np.int8], scales: npt.NDArray[np.float16]) -> F32:
    out: F32 = codes.astype(np.float32) * scales.astype(np.float32)[:, None]
    return out


def round_trip(vectors: F32) -> F32:
    """What a saved-and-loaded memory holds, so fitted and loaded models agree."""
    return dequantize(*quantize(vectors))


@dataclass(frozen=True)
class OutcomeMemory:
    """Vectors with the small/large outcome rates seen at each.

    Stored as int8 with a per-row scale (artifact size: one byte a dimension a
    row); held as float32 so a decision does not convert megabytes per call.

    With a ``basis`` (dim × r, orthonormal columns: the memory's leading principal
    directions), rows are held as unit vectors in that r-dimensional space and a
    query is projected and normalised the same way, so similarities are cosines
    there. A decision's largest cost is this product: with r = 128 of 384 it reads
    a third of the memory.
    """

    vectors: F32
    small_ok: F32
    large_ok: F32
    basis: F32 | None = None
    _columns: F32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        object.__setattr__(self, "vectors", vectors)
        # A contiguous transposed copy: one query times it is a plain row-major GEMV,
        # measured 0.12 ms p50 / 0.21 ms p99 CPU for 4,800 rows against 0.20 / 0.79 ms
        # through the strided view ``vectors.T``.
        object.__setattr__(self, "_columns", np.ascontiguousarray(vectors.T))

    @property
    def dim(self) -> int:
        """The width of the queries it takes."""
        return int(self.basis.shape[0] if self.basis is not None else self.vectors.shape[1])

    @property
    def basis_fits(self) -> bool:
        """No basis, or one that maps onto the rows' width."""
        return self.basis is None or self.basis.shape[1] == self.vectors.shape[1]

    def similarities(self, queries: F32) -> F32:
        if self.basis is not None:
            queries = project(queries, self.basis)
        out: F32 = queries @ self._columns
        return out


def principal_basis(vectors: F32, dims: int) -> F32 | None:
    """The ``dims`` leading right-singular vectors of ``vectors`` (dim × dims), or
    None when that would not reduce the width."""
    if dims <= 0 or dims >= vectors.shape[1]:
        return None
    _, _, vt = np.linalg.svd(vectors.astype(np.float64), full_matrices=False)
    basis: F32 = np.ascontiguousarray(vt[:dims].T, dtype=np.float32)
    return basis


def project(vectors: F32, basis: F32) -> F32:
    """Rows in the basis' space, normalised to unit length (so a copy of a stored
    row still has cosine ~1 with it: the self-exclusion of :func:`knn_rates`)."""
    out: F32 = vectors @ basis
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-9))
    return out


def knn_rates(memory: OutcomeMemory, queries: F32, k: int, tau: float) -> F32:
    """Per query: [small rate, large rate, best similarity] over the k nearest others.

    Rows the memory holds as (near) copies of the query are left out: the stacker
    was fitted on out-of-fold values, where a request never meets itself, so a
    training prompt scored again (e.g. the logged traffic the router was trained
    on, when calibrating its threshold) must not read its own outcome either. An
    exact repeat is the cache's business, not the router's.
    """
    sims = memory.similarities(queries)
    sims = np.where(sims >= SELF_SIMILARITY, np.float32(-1.0), sims)
    k = min(k, sims.shape[1])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, idx, axis=1)
    weights = np.exp((top - top.max(axis=1, keepdims=True)) / tau)
    weights /= weights.sum(axis=1, keepdims=True)
    small = (weights * memory.small_ok[idx]).sum(axis=1)
    large = (weights * memory.large_ok[idx]).sum(axis=1)
    return np.column_stack([small, large, top.max(axis=1)]).astype(np.float32)


def group_rates(groups: OutcomeMemory, queries: F32, tau: float) -> F32:
    """Per query: [small rate, large rate] of its softly assigned topic groups."""
    sims = groups.similarities(queries)
    weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / tau)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.column_stack([weights @ groups.small_ok, weights @ groups.large_ok]).astype(
        np.float32
    )


@dataclass(frozen=True)
class LearnedModel:
    lr_small: F32  # (len(LR_STRENGTHS), dim + 2)
    lr_large: F32
    memory: OutcomeMemory
    groups: OutcomeMemory
    knn_k: int
    knn_tau: float
    group_tau: float
    categories: tuple[str, ...]
    stack_mean: F32  # standardisation of SIGNALS
    stack_scale: F32
    #: Range of each signal over the stacker's training rows: signals are clipped to it,
    #: so a request unlike any seen (e.g. one the kNN memory holds itself) cannot push
    #: the pairwise products past what the heads were fitted on.
    stack_low: F32
    stack_high: F32
    #: Stacker heads over :func:`stack_design` rows, one row per ensemble member
    #: (members differ in L2 strength): P(the tiers' outcomes differ) and
    #: P(small is right | they differ). Shapes (members, stack_width).
    stack_differ: F32
    stack_small_if_differ: F32
    #: Per kind in KINDS: the threshold that sent the trainer's default large
    #: share of out-of-fold training traffic to large.
    default_thresholds: tuple[float, float, float]

    @property
    def dim(self) -> int:
        return self.memory.dim

    def default_threshold(self, kind: str) -> float:
        return self.default_thresholds[KINDS.index(kind)] if kind in KINDS else 0.5

    def signals(self, vectors: F32, prompt_tokens: npt.ArrayLike, cache_max_sim: F32) -> F32:
        design = lr_design(vectors, prompt_tokens)
        return np.column_stack(
            [
                design @ self.lr_small.T,
                design @ self.lr_large.T,
                knn_rates(self.memory, vectors, self.knn_k, self.knn_tau),
                group_rates(self.groups, vectors, self.group_tau),
                cache_max_sim,
            ]
        ).astype(np.float32)

    def stack_design(self, signals: F32, categories: list[str]) -> F32:
        clipped = np.clip(signals, self.stack_low, self.stack_high)
        return stack_design(clipped, self.stack_mean, self.stack_scale, self.categories, categories)

    def scores(self, kind: str, signals: F32, categories: list[str]) -> F32:
        if kind == "logistic":
            return gap_score(sigmoid(signals[:, 0]), sigmoid(signals[:, 2]))
        if kind == "knn":
            return gap_score(signals[:, 4], signals[:, 5])
        design = self.stack_design(signals, categories)
        return factored_score(
            sigmoid(design @ self.stack_differ.T), sigmoid(design @ self.stack_small_if_differ.T)
        )

    def save(self, path: Path) -> None:
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "format_version": np.array(FORMAT_VERSION),
            "lr_small": self.lr_small,
            "lr_large": self.lr_large,
            "knn": np.array([self.knn_k, self.knn_tau, self.group_tau], dtype=np.float64),
            "categories": np.array(self.categories, dtype=np.str_),
            "stack_mean": self.stack_mean,
            "stack_scale": self.stack_scale,
            "stack_low": self.stack_low,
            "stack_high": self.stack_high,
            "stack_differ": self.stack_differ,
            "stack_small_if_differ": self.stack_small_if_differ,
            "default_thresholds": np.array(self.default_thresholds, dtype=np.float64),
        }
        for name, mem in (("memory", self.memory), ("groups", self.groups)):
            codes, scales = quantize(mem.vectors)
            arrays[f"{name}_codes"] = codes
            arrays[f"{name}_scales"] = scales
            arrays[f"{name}_small"] = mem.small_ok.astype(np.float16)
            arrays[f"{name}_large"] = mem.large_ok.astype(np.float16)
            if mem.basis is not None:
                arrays[f"{name}_basis"] = mem.basis
        with Path(path).open("wb") as fh:  # a file object: numpy adds no ".npz" suffix
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]


_PAIRS = np.triu_indices(len(SIGNALS))
#: Products of two standardised signals are scaled down so one L2 penalty suits both.
PAIR_SCALE = 1.0 / 3.0


def stack_width(n_categories: int) -> int:
    """Columns of a stacker row: signals, their pairwise products, categories, bias."""
    return len(SIGNALS) + _PAIRS[0].size + n_categories + 1


def stack_design(
    signals: F32,
    mean: F32,
    scale: F32,
    known: tuple[str, ...],
    categories: list[str],
) -> F32:
    """Rows of [standardised signals, their pairwise products, category one-hot, 1]."""
    z = (signals - mean) / scale
    pairs = (z[:, _PAIRS[0]] * z[:, _PAIRS[1]]) * PAIR_SCALE
    onehot = np.zeros((len(categories), len(known)), dtype=np.float32)
    for row, name in enumerate(categories):
        if name in known:
            onehot[row, known.index(name)] = 1.0
    ones = np.ones((len(categories), 1), dtype=np.float32)
    return np.hstack([z, pairs, onehot, ones]).astype(np.float32)


def load_model(source: Path | IO[bytes]) -> LearnedModel:
    """Read a model saved by :meth:`LearnedModel.save` (a path or an open binary file)."""
    try:
        with np.load(source, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version not in READABLE_FORMATS:
                raise RouterArtifactError(
                    f"router artifact format {version}, expected one of {READABLE_FORMATS}"
                )

            def memory(name: str) -> OutcomeMemory:
                basis = data.get(f"{name}_basis")
                return OutcomeMemory(
                    vectors=dequantize(data[f"{name}_codes"], data[f"{name}_scales"]),
                    small_ok=data[f"{name}_small"].astype(np.float32),
                    large_ok=data[f"{name}_large"].astype(np.float32),
                    basis=None if basis is None else basis.astype(np.float32),
                )

            k, knn_tau, group_tau = (float(x) for x in data["knn"])
            a, b, c = (float(x) for x in data["default_thresholds"])
            model = LearnedModel(
                lr_small=data["lr_small"].astype(np.float32),
                lr_large=data["lr_large"].astype(np.float32),
                memory=memory("memory"),
                groups=memory("groups"),
                knn_k=int(k),
                knn_tau=knn_tau,
                group_tau=group_tau,
                categories=tuple(str(x) for x in data["categories"]),
                stack_mean=data["stack_mean"].astype(np.float32),
                stack_scale=data["stack_scale"].astype(np.float32),
                stack_low=data["stack_low"].astype(np.float32),
                stack_high=data["stack_high"].astype(np.float32),
                stack_differ=data["stack_differ"].astype(np.float32),
                stack_small_if_differ=data["stack_small_if_differ"].astype(np.float32),
                default_thresholds=(a, b, c),
            )
    except RouterArtifactError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise RouterArtifactError(f"cannot load router artifact {source!r}: {exc}") from exc
    _check_shapes(model, source)
    return model


def _check_shapes(model: LearnedModel, source: object) -> None:
    width = stack_width(len(model.categories))
    ok = (
        model.lr_small.shape == model.lr_large.shape == (len(LR_STRENGTHS), model.dim + 2)
        and model.groups.dim == model.dim
        and model.memory.basis_fits
        and model.groups.basis_fits
        and model.stack_differ.ndim == 2
        and model.stack_differ.shape == model.stack_small_if_differ.shape
        and model.stack_differ.shape[1] == width
        and model.stack_mean.shape == model.stack_scale.shape == (len(SIGNALS),)
        and model.stack_low.shape == model.stack_high.shape == (len(SIGNALS),)
    )
    if not ok:
        raise RouterArtifactError(f"router artifact {source!r} has inconsistent shapes")
