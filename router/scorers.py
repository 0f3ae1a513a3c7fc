"""Scorers: one method turning a request's features into P(small is good enough).

As in RouteLLM, a router kind is a class with one scoring method returning a
number in [0, 1]; the threshold decision is shared (:class:`router.Router`)
and kinds are looked up by name in :data:`SCORERS`, refusing unknown names.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from router.errors import RouterConfigError
from router.model import F32, LearnedModel
from router.types import RouteFeatures, Tier


class Scorer(ABC):
    """Scores requests in [0, 1]; higher means the small model is more likely enough.

    Learned kinds score ``(1 + P(small ok) - P(large ok)) / 2``: 0.5 means the
    large model is not expected to do better (both right, or both wrong).
    """

    name: ClassVar[str]
    #: Set for kinds that always choose one tier; the decision says ``pinned``.
    pinned: ClassVar[Tier | None] = None

    @abstractmethod
    def score_batch(self, features: Sequence[RouteFeatures]) -> F32:
        """Scores in [0, 1], one per request."""

    def score(self, features: RouteFeatures) -> float:
        return float(self.score_batch([features])[0])


class AlwaysSmall(Scorer):
    name = "always-small"
    pinned = "small"

    def score_batch(self, features: Sequence[RouteFeatures]) -> F32:
        return np.ones(len(features), dtype=np.float32)


class AlwaysLarge(Scorer):
    name = "always-large"
    pinned = "large"

    def score_batch(self, features: Sequence[RouteFeatures]) -> F32:
        return np.zeros(len(features), dtype=np.float32)


class RandomScorer(Scorer):
    """Uniform scores: the baseline every learned router must beat."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def score_batch(self, features: Sequence[RouteFeatures]) -> F32:
        return np.array([self._rng.random() for _ in features], dtype=np.float32)


class LearnedScorer(Scorer):
    """Base of the kinds that read a :class:`LearnedModel`."""

    def __init__(self, model: LearnedModel) -> None:
        self.model = model

    def score_batch(self, features: Sequence[RouteFeatures]) -> F32:
        vectors = np.stack([f.vector for f in features]).astype(np.float32)
        if vectors.shape[1] != self.model.dim:
            raise RouterConfigError(
                f"vector has {vectors.shape[1]} dimensions, "
                f"the router was trained on {self.model.dim}"
            )
        tokens = np.array([f.prompt_tokens for f in features], dtype=np.float32)
        cache_sim = np.array(
            [max(f.neighbour_similarities, default=0.0) for f in features], dtype=np.float32
        )
        signals = self.model.signals(vectors, tokens, cache_sim)
        return self.model.scores(self.name, signals, [f.category for f in features])


class LogisticScorer(LearnedScorer):
    """Logistic regression on the request vector and prompt length, one head per tier."""

    name = "logistic"


class KnnScorer(LearnedScorer):
    """What the nearest training requests needed: their weighted outcome rates."""

    name = "knn"


class BlendScorer(LearnedScorer):
    """All signals (LR, kNN, topic groups, cache neighbours) stacked: the default kind."""

    name = "blend"


SCORERS: dict[str, type[Scorer]] = {
    cls.name: cls
    for cls in (BlendScorer, LogisticScorer, KnnScorer, RandomScorer, AlwaysSmall, AlwaysLarge)
}


def check_kind(kind: str) -> str:
    if kind not in SCORERS:
        raise RouterConfigError(f"unknown router kind {kind!r}; known: {', '.join(SCORERS)}")
    return kind


def make_scorer(kind: str, model: LearnedModel | None = None, seed: int = 0) -> Scorer:
    """The scorer registered as ``kind``; learned kinds need ``model``."""
    cls = SCORERS[check_kind(kind)]
    if issubclass(cls, LearnedScorer):
        if model is None:
            raise RouterConfigError(f"router kind {kind!r} needs a trained model")
        return cls(model)
    if cls is RandomScorer:
        return RandomScorer(seed)
    return cls()
