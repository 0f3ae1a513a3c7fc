"""Load-adaptive policies: levels with hysteresis, bounded relaxation, recovery."""

from __future__ import annotations

import pytest

from cache import CategoryPolicy, PolicyError
from cache.adaptive import AdaptiveConfig, Level, LevelTracker, LoadSignal, PolicyAdapter

BOUNDED = CategoryPolicy(
    similarity_threshold=0.90, threshold_floor=0.80, ttl_seconds=100.0, ttl_max_factor=3.0
)
FIXED = CategoryPolicy(similarity_threshold=0.95, ttl_seconds=300.0)  # math / time-sensitive


def test_pressure_takes_the_worst_figure() -> None:
    calm = LoadSignal(
        in_flight=2, max_concurrency=10, ttft_ewma_s=0.1, ttft_slo_s=1.0, throttle_rate=0
    )
    assert calm.pressure == pytest.approx(0.2)
    slow = LoadSignal(
        in_flight=0, max_concurrency=10, ttft_ewma_s=3.0, ttft_slo_s=1.0, throttle_rate=0
    )
    assert slow.pressure == pytest.approx(3.0)
    throttled = LoadSignal(0, 10, 0.0, 1.0, throttle_rate=0.6)
    assert throttled.pressure == pytest.approx(1.2)


def test_level_rises_at_once_and_falls_only_after_dwell_and_hysteresis() -> None:
    t = LevelTracker(AdaptiveConfig(min_dwell_s=3.0, hysteresis=0.15))
    assert t.update(0.5, now=0) == "normal"
    assert t.update(1.1, now=1) == "overloaded"
    assert t.update(0.5, now=2) == "overloaded"  # held: dwell time not over
    assert t.update(0.9, now=10) == "overloaded"  # 0.9 is not below 1.0 - 0.15
    assert t.update(0.84, now=11) == "elevated"
    assert t.update(0.79, now=12) == "elevated"  # no flapping just under the boundary
    assert t.update(0.6, now=15) == "normal"


def test_relaxation_moves_within_bounds_and_returns() -> None:
    adapter = PolicyAdapter(
        AdaptiveConfig(step=0.25, equivalence_drop=0.2), equivalence_default=0.6
    )
    policies = {"factual": BOUNDED, "math": FIXED}
    shares = {"factual": {"large": 1.0}, "math": {"large": 1.0}}
    overloaded: dict[str, Level] = {"small": "normal", "large": "overloaded"}
    seen = []
    for _ in range(6):
        moved = adapter.tick(policies, shares, overloaded)
        assert all(m.category == "factual" for m in moved)
        eff = adapter.effective("factual", BOUNDED)
        assert BOUNDED.threshold_floor is not None
        assert BOUNDED.threshold_floor <= eff.similarity_threshold <= BOUNDED.similarity_threshold
        assert eff.ttl_seconds == BOUNDED.ttl_seconds  # writes keep the configured TTL
        assert 1.0 <= eff.ttl_stretch <= BOUNDED.ttl_max_factor
        seen.append(eff.similarity_threshold)
    assert seen[-1] == pytest.approx(0.80) and seen[0] > seen[-1]
    full = adapter.effective("factual", BOUNDED)
    assert full.ttl_stretch == pytest.approx(3.0)
    assert full.equivalence_threshold is None  # no equivalence_floor: the checker decides as ever
    assert adapter.effective("math", FIXED) == FIXED  # no bounds: never changes
    calm: dict[str, Level] = {"small": "normal", "large": "normal"}
    for _ in range(4):
        adapter.tick(policies, shares, calm)
    assert adapter.effective("factual", BOUNDED) == BOUNDED


def test_only_categories_sent_to_the_loaded_tier_relax() -> None:
    adapter = PolicyAdapter(AdaptiveConfig(step=1.0))
    policies = {"a": BOUNDED, "b": BOUNDED}
    shares = {"a": {"large": 1.0}, "b": {"small": 1.0}}
    adapter.tick(policies, shares, {"small": "normal", "large": "overloaded"})
    assert adapter.effective("a", BOUNDED).similarity_threshold == pytest.approx(0.80)
    assert adapter.effective("b", BOUNDED) == BOUNDED
    elevated = PolicyAdapter(AdaptiveConfig(step=1.0, elevated_target=0.5))
    elevated.tick(policies, shares, {"small": "normal", "large": "elevated"})
    assert elevated.effective("a", BOUNDED).similarity_threshold == pytest.approx(0.85)


def test_bad_adaptive_config_is_refused() -> None:
    with pytest.raises(PolicyError, match="elevated_at"):
        AdaptiveConfig(elevated_at=1.2, overloaded_at=1.0)
    with pytest.raises(PolicyError, match="step"):
        AdaptiveConfig(step=0)


def test_equivalence_threshold_relaxes_only_toward_a_category_floor_within_the_cap() -> None:
    adapter = PolicyAdapter(
        AdaptiveConfig(step=1.0, equivalence_drop=0.2), equivalence_default=0.84
    )
    near = CategoryPolicy(ttl_max_factor=2.0, equivalence_floor=0.74)  # floor within the cap
    far = CategoryPolicy(ttl_max_factor=2.0, equivalence_floor=0.3)  # the cap binds
    own = CategoryPolicy(equivalence_threshold=0.9, equivalence_floor=0.8)  # own threshold
    none = CategoryPolicy(ttl_max_factor=2.0)  # no floor: never relaxes
    policies = {"near": near, "far": far, "own": own, "none": none}
    shares = {c: {"large": 1.0} for c in policies}
    adapter.tick(policies, shares, {"small": "normal", "large": "overloaded"})
    assert adapter.effective("near", near).equivalence_threshold == pytest.approx(0.74)
    assert adapter.effective("far", far).equivalence_threshold == pytest.approx(0.64)
    assert adapter.effective("own", own).equivalence_threshold == pytest.approx(0.8)
    assert adapter.effective("none", none).equivalence_threshold is None
    with pytest.raises(PolicyError, match="equivalence_floor"):
        CategoryPolicy(equivalence_threshold=0.7, equivalence_floor=0.8)
