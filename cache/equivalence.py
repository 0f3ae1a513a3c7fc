"""Is a cached question the same question as the one just asked?

The semantic tier finds candidates by cosine; this check decides. It first
applies hard vetoes (:mod:`cache.equivalence_text`: a different number,
arithmetic operator, unit, named entity, or a negation added to an otherwise
identical text; numbers and names only in otherwise near-identical texts, as
are a word swapped for its opposite and a direction reversed around "to")
because embeddings barely move on them and a false hit is the worst failure a
cache can have; names are also caught lower-cased, by word tables shipped with
the scorer (a near-identical text that swaps one name-like word for another).
Pairs that pass go to a small learned scorer, numpy only: a one-hidden-layer
network reads the embeddings and a few lexical features, and its logit joins
the lexical features of :mod:`cache.equivalence_features` and the cosine of
the two vectors under a learned linear map (the adapter) in boosted trees
(:mod:`cache.equivalence_trees`). All are fitted by
``scripts/train_equivalence.py`` on a fixed 70 % of the Quora Question Pairs
dev file; the trees' output is Platt-calibrated on out-of-fold scores, so
``score`` reads as a probability of equivalence. The weights, adapter, trees,
hashed word tables and default threshold ship as ``cache/data/equivalence.npz``.

A vetoed pair scores 0 and is refused at every threshold, 0 included: the
verdict is decided by the veto, not by comparing its score.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cache.equivalence_features import (
    TREE_NAMES,
    adapted_cosine,
    lexical_features,
    network_features,
    tree_features,
)
from cache.equivalence_text import IDF_BITS, Lexicon, TextSignature, hard_mismatch, signature
from cache.equivalence_trees import Forest
from cache.errors import CacheError

ARTIFACT = "equivalence.npz"

Array = npt.NDArray[np.float32]


class EquivalenceError(CacheError, ValueError):
    """An argument of the equivalence check is invalid, or its artifact is unreadable."""


@dataclass(frozen=True, slots=True)
class EquivalenceVerdict:
    """The decision on one (query, candidate) pair.

    ``reason`` is ``"identical"`` (same text once case and spacing are folded),
    ``"hard_mismatch:<kind>"`` with kind number, operator, negation, unit,
    entity, opposite or order (then ``score`` is 0 and ``equivalent`` is false whatever the
    threshold), or ``"model"`` (the learned scorer decided).
    """

    equivalent: bool
    score: float
    cosine: float
    threshold: float
    reason: str


@dataclass(frozen=True, slots=True)
class _Network:
    """Standardise, ReLU hidden layer (absent for a linear model), logit."""

    mean: Array
    scale: Array
    hidden_w: Array
    hidden_b: Array
    out_w: Array
    out_b: float

    def logit(self, features: Array) -> float:
        x = (features - self.mean) / self.scale
        if self.hidden_w.size:
            x = np.maximum(self.hidden_w @ x + self.hidden_b, 0.0)
        return float(self.out_w @ x) + self.out_b


@dataclass(frozen=True, slots=True)
class _Scorer:
    """Network logit, then trees over lexical features and that logit, then Platt."""

    network: _Network
    forest: Forest
    lexicon: Lexicon
    adapter: Array
    platt_a: float
    platt_b: float

    def score(self, a: TextSignature, b: TextSignature, u: Array, v: Array) -> float:
        lexical = lexical_features(a, b, float(u @ v))
        logit = self.network.logit(network_features(lexical, u, v))
        adapted = adapted_cosine(self.adapter, u, v)
        raw = self.forest.raw_score(tree_features(a, b, lexical, self.lexicon, adapted, logit))
        z = self.platt_a * raw + self.platt_b
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def _folded(text: str) -> str:
    # Case, spacing and closing punctuation do not change a question
    # ("Where was it filmed?" is "where was it filmed").
    return " ".join(text.casefold().split()).rstrip(" ?!.;:")


def _check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, int | float) and 0.0 <= threshold <= 1.0):
        raise EquivalenceError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


class EquivalenceChecker:
    """Decides whether a cached candidate answers the same question as a query."""

    def __init__(self, scorer: _Scorer, *, dim: int, default_threshold: float) -> None:
        self._scorer = scorer
        self.dim = dim
        self.default_threshold = _check_threshold(default_threshold)

    @classmethod
    def load(cls, source: Path | bytes) -> EquivalenceChecker:
        """A checker from an artifact written by ``scripts/train_equivalence.py``."""
        try:
            raw = source.read_bytes() if isinstance(source, Path) else source
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
            f32 = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
            network = _Network(
                mean=f32["mean"],
                scale=f32["scale"],
                hidden_w=f32["hidden_w"],
                hidden_b=f32["hidden_b"],
                out_w=f32["out_w"],
                out_b=float(meta["out_b"]),
            )
            forest = Forest(
                feature=arrays["tree_feature"].astype(np.int16),
                threshold=arrays["tree_threshold"].astype(np.float64),
                leaf=arrays["tree_leaf"].astype(np.float64),
                depth=int(meta["tree_depth"]),
            )
            rows = (1 << IDF_BITS,)
            if (
                list(meta["tree_features"]) != list(TREE_NAMES)
                or f32["idf"].shape != rows
                or f32["proper"].shape != rows
                or f32["adapter"].shape[1:] != (int(meta["dim"]),)
            ):
                raise ValueError("artifact was fitted on other features")
            lexicon = Lexicon(f32["idf"], f32["proper"], float(meta["rare_idf"]))
            scorer = _Scorer(
                network,
                forest,
                lexicon,
                f32["adapter"],
                float(meta["platt_a"]),
                float(meta["platt_b"]),
            )
            dim, threshold = int(meta["dim"]), float(meta["default_threshold"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EquivalenceError(f"unreadable equivalence artifact: {exc}") from exc
        return cls(scorer, dim=dim, default_threshold=threshold)

    @classmethod
    def load_default(cls) -> EquivalenceChecker:
        """The checker shipped with cachegate (``cache/data/equivalence.npz``)."""
        resource = importlib.resources.files("cache").joinpath("data", ARTIFACT)
        return cls.load(resource.read_bytes())

    def _vector(self, name: str, vec: Array) -> Array:
        if vec.shape != (self.dim,):
            raise EquivalenceError(f"{name} must have shape ({self.dim},), got {vec.shape}")
        vec = vec.astype(np.float32, copy=False)
        norm = float(np.sqrt(vec @ vec))
        if not math.isfinite(norm) or norm == 0.0:
            raise EquivalenceError(f"{name} must be finite and non-zero")
        return vec if abs(norm - 1.0) < 1e-3 else vec / np.float32(norm)

    def check(
        self,
        query_text: str,
        query_vec: Array,
        cand_text: str,
        cand_vec: Array,
        threshold: float | None = None,
    ) -> EquivalenceVerdict:
        """The verdict on one candidate; ``threshold=None`` uses :attr:`default_threshold`.

        0 is a valid threshold (everything not vetoed passes); only ``None``
        falls back to the default.
        """
        limit = self.default_threshold if threshold is None else _check_threshold(threshold)
        u = self._vector("query_vec", query_vec)
        v = self._vector("cand_vec", cand_vec)
        cosine = float(u @ v)
        if _folded(query_text) == _folded(cand_text):
            return EquivalenceVerdict(True, 1.0, cosine, limit, "identical")
        a, b = signature(query_text), signature(cand_text)
        kind = hard_mismatch(a, b, self._scorer.lexicon)
        if kind is not None:
            return EquivalenceVerdict(False, 0.0, cosine, limit, f"hard_mismatch:{kind}")
        score = self._scorer.score(a, b, u, v)
        return EquivalenceVerdict(score >= limit, score, cosine, limit, "model")
