from __future__ import annotations

from typing import Any

import pytest

from cache import CategoryPolicy, PolicyError, PolicySet


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("similarity_threshold", 1.5, "similarity_threshold must be in (0, 1], got 1.5"),
        ("similarity_threshold", 0.0, "similarity_threshold must be in (0, 1], got 0.0"),
        ("similarity_threshold", float("nan"), "similarity_threshold must be a finite number"),
        ("equivalence_threshold", -0.1, "equivalence_threshold must be in [0, 1] or None"),
        ("ttl_seconds", 0, "ttl_seconds must be > 0, got 0"),
        ("max_entries", 0, "max_entries must be >= 1, got 0"),
        ("max_entries", 2.5, "max_entries must be an int"),
        ("eviction", "random", "eviction must be one of ('lru', 'lfu', 'fifo')"),
        ("sampling_params", ["temperature"], "sampling_params must be a tuple"),
        ("threshold_floor", 0.95, "threshold_floor must be in (0, similarity_threshold=0.9]"),
        ("ttl_max_factor", 0.5, "ttl_max_factor must be >= 1.0, got 0.5"),
        ("enabled", "yes", "enabled must be a bool"),
    ],
)
def test_invalid_field_is_named(field: str, value: Any, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        CategoryPolicy(**{field: value})
    assert message in str(info.value)


def test_zero_equivalence_threshold_is_kept_not_defaulted() -> None:
    assert CategoryPolicy(equivalence_threshold=0.0).equivalence_threshold == 0.0
    assert CategoryPolicy().equivalence_threshold is None


def test_policy_is_frozen() -> None:
    policy = CategoryPolicy()
    with pytest.raises(AttributeError):
        policy.ttl_seconds = 5  # type: ignore[misc]


def test_policy_set_falls_back_to_default() -> None:
    code = CategoryPolicy(similarity_threshold=0.97, eviction="lfu")
    policies = {"code": code}
    ps = PolicySet(policies, default=CategoryPolicy(ttl_seconds=60))
    policies["code"] = CategoryPolicy()  # the set keeps its own copy
    assert ps.for_category("code") is code
    assert ps.for_category("unknown").ttl_seconds == 60
    assert list(ps) == ["code"] and len(ps) == 1 and ps["code"] is code
    with pytest.raises(PolicyError, match="must be a CategoryPolicy"):
        PolicySet({"x": "lru"})  # type: ignore[dict-item]
