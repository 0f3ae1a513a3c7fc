from __future__ import annotations

import pytest

from router import ExampleOutcome, RouterError, Utility, UtilityModel, refresh


def test_utility_moves_with_rewards() -> None:
    model = UtilityModel()
    assert model.utility("e") == 0.5
    for _ in range(4):
        model.update("e", 1.0)
    model.update("f", 0.0)
    assert model.utility("e") == pytest.approx(5 / 6)
    assert model.utility("f") == pytest.approx(1 / 3)
    restored = UtilityModel(model.states())
    assert restored.utility("e") == model.utility("e")


def test_decay_forgets_old_evidence() -> None:
    model = UtilityModel(decay=0.5)
    for _ in range(20):
        model.update("e", 1.0)
    for _ in range(3):
        model.update("e", 0.0)
    assert model.utility("e") < 0.5


def test_bad_reward_refused() -> None:
    with pytest.raises(RouterError, match="reward"):
        UtilityModel().update("e", 2.0)


def test_refresh_replays_and_prunes() -> None:
    pool = {"good": Utility(), "poor": Utility(), "flagged": Utility(), "new": Utility()}
    outcomes = [ExampleOutcome(("good", "poor"), 0.0) for _ in range(6)]
    outcomes += [ExampleOutcome(("good", "evicted"), 1.0) for _ in range(12)]
    result = refresh(pool, outcomes, bad_feedback={"flagged"}, min_utility=0.3, min_uses=5)
    assert result.pruned == ("flagged", "poor")
    assert set(result.kept) == {"good", "new"}
    assert result.kept["good"].mean > 0.6
    assert pool["good"] == Utility()  # input untouched


def test_refresh_caps_pool_by_utility() -> None:
    pool = {"a": Utility(5, 1), "b": Utility(1, 5), "c": Utility(3, 3)}
    result = refresh(pool, [], max_pool=2)
    assert set(result.kept) == {"a", "c"} and result.pruned == ("b",)
