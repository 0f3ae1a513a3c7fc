"""The learned scoring model: logistic regression + a kNN outcome memory, stacked.

Three parts, all plain numpy so the runtime needs nothing else:

* ``lr``: logistic regression over the request vector and log prompt length;
* ``knn``: the k nearest training requests (a float16 memory of their vectors
  and observed outcomes) give similarity-weighted rates of "small was right"
  and "large was right" — what traffic like this needed before;
* ``stack``: a small logistic regression over [lr logit, kNN rates, best memory
  similarity, best cache-neighbour similarity, per-category bias] fitted on
  out-of-fold values, so neither part grades its own training rows.

The score is ``P(small is good enough)``, trained on the soft target
``(1 + small_ok - large_ok) / 2``: ranking by it is ranking by the expected
quality gain of calling the large model, which is what the threshold trades.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from router.errors import RouterArtifactError

F32 = npt.NDArray[np.float32]
FORMAT_VERSION = 1
STACK_BASE = ("lr_logit", "knn_soft", "knn_small", "knn_large", "mem_max_sim", "cache_max_sim")


def sigmoid(x: F32) -> F32:
    out: F32 = (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
    return out


def logit(p: F32) -> F32:
    q = np.clip(p, 1e-4, 1 - 1e-4)
    out: F32 = np.log(q / (1 - q)).astype(np.float32)
    return out


def length_feature(prompt_tokens: npt.ArrayLike) -> F32:
    return (np.log1p(np.asarray(prompt_tokens, dtype=np.float32)) / 5.0).astype(np.float32)


def lr_design(vectors: F32, prompt_tokens: npt.ArrayLike) -> F32:
    """Rows of [vector, log length, 1]."""
    n = vectors.shape[0]
    ones = np.ones((n, 1), dtype=np.float32)
    return np.hstack([vectors, length_feature(prompt_tokens)[:, None], ones]).astype(np.float32)


@dataclass(frozen=True)
class KnnMemory:
    """Training vectors (float16) and their observed outcomes."""

    vectors: npt.NDArray[np.float16]
    small_ok: F32
    large_ok: F32
    k: int
    tau: float

    def stats(self, queries: F32, exclude: npt.NDArray[np.bool_] | None = None) -> F32:
        """Per query: [soft rate, small rate, large rate, best similarity].

        ``exclude`` (queries × memory) masks neighbours out — training uses it so
        a row never counts itself or its own fold.
        """
        sims = queries @ self.vectors.T.astype(np.float32)
        if exclude is not None:
            sims = np.where(exclude, -2.0, sims)
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        weights = np.exp((top - top.max(axis=1, keepdims=True)) / self.tau)
        weights /= weights.sum(axis=1, keepdims=True)
        small = (weights * self.small_ok[idx]).sum(axis=1)
        large = (weights * self.large_ok[idx]).sum(axis=1)
        soft = 0.5 * (1.0 + small - large)
        return np.stack([soft, small, large, top.max(axis=1)], axis=1).astype(np.float32)


@dataclass(frozen=True)
class LearnedModel:
    lr_weights: F32
    memory: KnnMemory
    stack_weights: F32
    categories: tuple[str, ...]
    #: Per learned kind (blend, logistic, knn): the threshold that sent the
    #: trainer's default large share of out-of-fold training traffic to large.
    default_thresholds: tuple[float, float, float]

    def default_threshold(self, kind: str) -> float:
        kinds = ("blend", "logistic", "knn")
        return self.default_thresholds[kinds.index(kind)] if kind in kinds else 0.5

    def lr_logits(self, vectors: F32, prompt_tokens: npt.ArrayLike) -> F32:
        return (lr_design(vectors, prompt_tokens) @ self.lr_weights).astype(np.float32)

    def stack_design(
        self, lr_logit: F32, knn: F32, cache_max_sim: F32, categories: list[str]
    ) -> F32:
        cat = np.zeros((len(categories), len(self.categories)), dtype=np.float32)
        for row, name in enumerate(categories):
            if name in self.categories:
                cat[row, self.categories.index(name)] = 1.0
        knn_soft_logit = logit(knn[:, 0])[:, None]
        ones = np.ones((len(categories), 1), dtype=np.float32)
        parts = [lr_logit[:, None], knn_soft_logit, knn[:, 1:4], cache_max_sim[:, None], cat, ones]
        return np.hstack(parts).astype(np.float32)

    def save(self, path: Path) -> None:
        with Path(path).open("wb") as fh:  # a file object: numpy adds no ".npz" suffix
            self._write(fh)

    def _write(self, fh: IO[bytes]) -> None:
        np.savez_compressed(
            fh,
            format_version=np.int32(FORMAT_VERSION),
            lr_weights=self.lr_weights,
            memory_vectors=self.memory.vectors,
            memory_small=self.memory.small_ok.astype(np.float16),
            memory_large=self.memory.large_ok.astype(np.float16),
            knn=np.array([self.memory.k, self.memory.tau], dtype=np.float32),
            stack_weights=self.stack_weights,
            categories=np.array(self.categories, dtype=np.str_),
            default_thresholds=np.array(self.default_thresholds, dtype=np.float64),
        )


def load_model(source: Path | IO[bytes]) -> LearnedModel:
    """Read a model saved by :meth:`LearnedModel.save` (a path or an open binary file)."""
    try:
        with np.load(source, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise RouterArtifactError(f"router artifact format {version}, expected 1")
            k, tau = (float(x) for x in data["knn"])
            memory = KnnMemory(
                vectors=data["memory_vectors"].astype(np.float16),
                small_ok=data["memory_small"].astype(np.float32),
                large_ok=data["memory_large"].astype(np.float32),
                k=int(k),
                tau=tau,
            )
            model = LearnedModel(
                lr_weights=data["lr_weights"].astype(np.float32),
                memory=memory,
                stack_weights=data["stack_weights"].astype(np.float32),
                categories=tuple(str(c) for c in data["categories"]),
                default_thresholds=_three(data["default_thresholds"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, RouterArtifactError):
            raise
        raise RouterArtifactError(f"cannot load router artifact {source!r}: {exc}") from exc
    expected = 1 + len(STACK_BASE) + len(model.categories)
    if model.stack_weights.shape != (expected,) or memory.vectors.shape[1] + 2 != len(
        model.lr_weights
    ):
        raise RouterArtifactError(f"router artifact {source!r} has inconsistent shapes")
    return model


def _three(values: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)
