from __future__ import annotations

import numpy as np
import pytest

from router import (
    SCORERS,
    RouteDecision,
    RouteFeatures,
    Router,
    RouterConfig,
    RouterError,
    TierLoad,
    untrained_router,
)

DOWN = TierLoad(healthy=False, overloaded=False)
BUSY = TierLoad(healthy=True, overloaded=True)
OK = TierLoad()


def unit(seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def test_registry_names() -> None:
    assert set(SCORERS) == {"blend", "logistic", "knn", "random", "always-small", "always-large"}


@pytest.mark.parametrize("kind", ["gpt", "", "Blend", "mf"])
def test_unknown_router_kind_refused_naming_it(kind: str) -> None:
    with pytest.raises(RouterError, match=repr(kind)):
        RouterConfig(kind=kind)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), True])
def test_threshold_outside_unit_interval_refused(threshold: float) -> None:
    with pytest.raises(RouterError, match="threshold"):
        RouterConfig(threshold=threshold)


def test_zero_and_one_are_valid_thresholds(default_router: Router) -> None:
    feats = RouteFeatures(vector=unit(), prompt_tokens=10)
    assert default_router.with_threshold(0.0).decide(feats).tier == "small"
    assert default_router.with_threshold(1.0).decide(feats).tier == "large"


def test_bad_override_tier_refused() -> None:
    with pytest.raises(RouterError, match="medium"):
        RouterConfig(category_overrides={"code": "medium"})  # type: ignore[dict-item]


def test_learned_kind_without_model_refused() -> None:
    with pytest.raises(RouterError, match="trained model"):
        untrained_router(RouterConfig(kind="knn"))


PROMPTS = [
    "What is the capital of France?\nA. Paris\nB. Rome\nC. Madrid\nD. Berlin\nAnswer:",
    "Which president signed the Emancipation Proclamation?\nA. Lincoln\nB. Grant\nAnswer:",
    "Find the degree of the field extension Q(sqrt(2), sqrt(3)) over Q.\nA. 2\nB. 4\nAnswer:",
    "Let f(x) = x^3 - 3x. Find the number of real solutions of f(f(x)) = 0.\nA. 5\nB. 9\nAnswer:",
    "A 45-year-old man presents with chest pain radiating to the left arm. Diagnosis?",
    "Write a haiku about spring.",
    "hi, how are you?",
    "Which of these is a mammal?\nA. shark\nB. dolphin\nC. trout\nD. squid\nAnswer:",
]


def test_decides_both_ways_on_real_prompts(default_router: Router, features_for) -> None:  # type: ignore[no-untyped-def]
    feats = features_for(PROMPTS)
    scores = default_router.score_batch(feats)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == pytest.approx([default_router.score(f) for f in feats], abs=1e-6)
    mid = float(np.median(scores))
    router = default_router.with_threshold(mid)
    decisions = [router.decide(f) for f in feats]
    assert {d.tier for d in decisions} == {"small", "large"}
    for d, s in zip(decisions, scores, strict=True):
        assert d == RouteDecision("small" if s >= mid else "large", "router", d.score, mid)
        assert d.score == pytest.approx(s, abs=1e-6)


def test_default_artifact_threshold_is_calibrated(default_router: Router) -> None:
    assert 0.0 < default_router.threshold < 1.0
    assert default_router.kind == "blend"


def test_category_override_wins_before_scoring(default_router: Router) -> None:
    config = RouterConfig(category_overrides={"code": "large", "conversation": "small"})
    router = default_router.with_config(config)
    code = router.decide(RouteFeatures(vector=unit(1), category="code"))
    chat = router.decide(RouteFeatures(vector=unit(2), category="conversation"))
    assert code == RouteDecision("large", "override", None, None)
    assert chat == RouteDecision("small", "override", None, None)


def test_pinned_kinds() -> None:
    small = untrained_router(RouterConfig(kind="always-small"))
    large = untrained_router(RouterConfig(kind="always-large"))
    feats = RouteFeatures(vector=unit())
    assert small.decide(feats) == RouteDecision("small", "pinned", None, None)
    assert large.decide(feats).tier == "large"


def test_overloaded_tier_sheds_to_the_other() -> None:
    router = untrained_router(RouterConfig(kind="always-large"))
    feats = RouteFeatures(vector=unit())
    d = router.decide(feats, load={"small": OK, "large": BUSY})
    assert (d.tier, d.reason) == ("small", "load")
    d = router.decide(feats, load={"small": OK, "large": DOWN})
    assert (d.tier, d.reason) == ("small", "fallback")


def test_load_never_moves_to_a_worse_tier() -> None:
    router = untrained_router(RouterConfig(kind="always-small"))
    feats = RouteFeatures(vector=unit())
    # small overloaded, large down: stay on small (slow beats down)
    assert router.decide(feats, load={"small": BUSY, "large": DOWN}).tier == "small"
    # both overloaded: keep the router's choice
    assert router.decide(feats, load={"small": BUSY, "large": BUSY}).reason == "pinned"
    # small down, large only overloaded: go large
    assert router.decide(feats, load={"small": DOWN, "large": BUSY}).reason == "fallback"


def test_load_moves_traffic_share(default_router: Router, features_for) -> None:  # type: ignore[no-untyped-def]
    feats = features_for(PROMPTS)
    router = default_router.with_threshold(float(np.median(default_router.score_batch(feats))))
    calm = [router.decide(f).tier for f in feats]
    busy = [router.decide(f, load={"large": BUSY}).tier for f in feats]
    assert calm.count("large") >= 3
    assert busy.count("large") == 0


def test_override_also_respects_load() -> None:
    config = RouterConfig(kind="random", category_overrides={"code": "large"})
    router = untrained_router(config)
    d = router.decide(RouteFeatures(vector=unit(), category="code"), load={"large": DOWN})
    assert (d.tier, d.reason) == ("small", "fallback")


def test_vector_of_wrong_dimension_refused(default_router: Router) -> None:
    with pytest.raises(RouterError, match="dimensions"):
        default_router.decide(RouteFeatures(vector=np.ones(8, dtype=np.float32)))


def test_random_router_is_seeded() -> None:
    feats = RouteFeatures(vector=unit())
    a = untrained_router(RouterConfig(kind="random", seed=3))
    b = untrained_router(RouterConfig(kind="random", seed=3))
    assert [a.score(feats) for _ in range(5)] == [b.score(feats) for _ in range(5)]
