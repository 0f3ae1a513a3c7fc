"""The small/large decision: overrides, score vs threshold, then load."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path

from router.config import RouterConfig
from router.model import LearnedModel, load_model
from router.scorers import Scorer, make_scorer
from router.types import Reason, RouteDecision, RouteFeatures, Tier, TierLoad, check_unit

DEFAULT_ARTIFACT = "default_router.npz"
UNTRAINED_THRESHOLD = 0.5


def _other(tier: Tier) -> Tier:
    return "large" if tier == "small" else "small"


class Router:
    """Decides per cache miss; holds no mutable state besides the random kind's RNG."""

    def __init__(
        self, scorer: Scorer, config: RouterConfig, model: LearnedModel | None = None
    ) -> None:
        self.scorer = scorer
        self.config = config
        self.model = model
        default = model.default_threshold(config.kind) if model is not None else UNTRAINED_THRESHOLD
        self.threshold = config.threshold if config.threshold is not None else default

    @property
    def kind(self) -> str:
        return self.config.kind

    def with_config(self, config: RouterConfig) -> Router:
        """A router with new settings sharing this one's trained model."""
        return Router(make_scorer(config.kind, self.model, config.seed), config, self.model)

    def with_threshold(self, threshold: float) -> Router:
        return self.with_config(replace(self.config, threshold=check_unit(threshold, "threshold")))

    def score(self, features: RouteFeatures) -> float:
        return self.scorer.score(features)

    def score_batch(self, features: Sequence[RouteFeatures]) -> list[float]:
        """Scores for many requests at once (calibration on logged traffic, benches)."""
        return [float(s) for s in self.scorer.score_batch(features)] if features else []

    def decide(
        self, features: RouteFeatures, load: Mapping[str, TierLoad] | None = None
    ) -> RouteDecision:
        """Where this miss goes; ``load`` maps 'small'/'large' to their current view."""
        decision = self._choose(features)
        return self._apply_load(decision, load or {})

    def _choose(self, features: RouteFeatures) -> RouteDecision:
        override = self.config.category_overrides.get(features.category)
        if override is not None:
            return RouteDecision(tier=override, reason="override", score=None, threshold=None)
        if self.scorer.pinned is not None:
            return RouteDecision(
                tier=self.scorer.pinned, reason="pinned", score=None, threshold=None
            )
        score = self.scorer.score(features)
        tier: Tier = "small" if score >= self.threshold else "large"
        return RouteDecision(tier=tier, reason="router", score=score, threshold=self.threshold)

    @staticmethod
    def _apply_load(decision: RouteDecision, load: Mapping[str, TierLoad]) -> RouteDecision:
        here = load.get(decision.tier, TierLoad())
        if here.usable:
            return decision
        other_tier = _other(decision.tier)
        there = load.get(other_tier, TierLoad())
        # Move only towards something better: a down tier to a healthy one, an
        # overloaded tier to one that is neither; otherwise keep the choice and
        # let the backend pool's own fallback and errors speak.
        better = there.usable or (not here.healthy and there.healthy)
        if not better:
            return decision
        reason: Reason = "fallback" if not here.healthy else "load"
        return replace(decision, tier=other_tier, reason=reason)


def load_router(path: Path | None = None, config: RouterConfig | None = None) -> Router:
    """A router from a trained artifact (the bundled default when ``path`` is None)."""
    config = config or RouterConfig()
    if path is None:
        with resources.files("router").joinpath("data", DEFAULT_ARTIFACT).open("rb") as fh:
            model = load_model(fh)
    else:
        model = load_model(Path(path))
    return Router(make_scorer(config.kind, model, config.seed), config, model)


def router_from_model(model: LearnedModel, config: RouterConfig | None = None) -> Router:
    """A router over a model fitted in this process (benches, tests)."""
    config = config or RouterConfig()
    return Router(make_scorer(config.kind, model, config.seed), config, model)


def untrained_router(config: RouterConfig) -> Router:
    """A router of an untrained kind ('random', 'always-small', 'always-large')."""
    return Router(make_scorer(config.kind, None, config.seed), config, None)
