"""Load-adaptive cache policies: relax thresholds and stretch TTLs under load, within bounds.

Plain values in, plain values out (no clocks read, no I/O): the proxy feeds a
load signal per backend tier every tick and asks for effective policies.

* :class:`LevelTracker` turns a pressure figure into a level (normal,
  elevated, overloaded) with hysteresis and a minimum dwell time, so the level
  does not flap around a boundary.
* :class:`PolicyAdapter` keeps, per category, a relaxation in [0, 1] that
  steps toward a target set by the levels of the tiers the category's misses
  go to, and returns to 0 when the load falls. A category only moves within
  its policy's bounds: ``threshold_floor`` (lowest similarity threshold) and
  ``ttl_max_factor`` (longest TTL stretch); a policy without bounds never
  changes. The TTL stretch acts at read time (``CategoryPolicy.ttl_stretch``):
  entries are written with the configured TTL, and while a category is relaxed
  its lookups may serve its entries up to ``ttl_stretch`` × TTL after they were
  stored (stale-while-overloaded). The equivalence threshold, which makes the
  final call among the candidates the cosine floor admits, relaxes only for
  categories with an ``equivalence_floor`` (toward it, by at most
  ``equivalence_drop``): on the replay's dev data the checker's refusals just
  under its threshold are right answers for factual paraphrases but wrong ones
  for conversation, so one global drop buys false hits where it buys hits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from cache.errors import PolicyError
from cache.policy import CategoryPolicy

Level = Literal["normal", "elevated", "overloaded"]
LEVELS: tuple[Level, ...] = ("normal", "elevated", "overloaded")
LEVEL_VALUE: Mapping[Level, int] = {"normal": 0, "elevated": 1, "overloaded": 2}


@dataclass(frozen=True)
class LoadSignal:
    """What the proxy sees of one backend tier right now."""

    in_flight: int
    max_concurrency: int
    ttft_ewma_s: float
    ttft_slo_s: float
    throttle_rate: float  # share of recent calls answered 429/503

    @property
    def pressure(self) -> float:
        """1.0 means "at capacity" on the worst of the three figures."""
        concurrency = self.in_flight / max(1, self.max_concurrency)
        latency = self.ttft_ewma_s / self.ttft_slo_s if self.ttft_slo_s > 0 else 0.0
        return max(concurrency, latency, 2.0 * self.throttle_rate)


@dataclass(frozen=True)
class AdaptiveConfig:
    elevated_at: float = 0.8  # pressure at which normal → elevated
    overloaded_at: float = 1.0  # pressure at which → overloaded
    hysteresis: float = 0.15  # a level is left only below its entry point minus this
    min_dwell_s: float = 3.0  # a level is held at least this long before falling
    step: float = 0.25  # relaxation change per tick (ticks are ~1 s)
    elevated_target: float = 0.5  # relaxation aimed at while elevated (1.0 when overloaded)
    # The most any category's equivalence threshold may drop at full relaxation (a
    # global cap over the per-category ``equivalence_floor``). The equivalence check
    # makes the final call among the candidates the cosine floor admits, so lowering
    # the floor alone admits candidates it then refuses.
    equivalence_drop: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.elevated_at < self.overloaded_at:
            raise PolicyError("adaptive: need 0 < elevated_at < overloaded_at")
        if not 0 <= self.hysteresis < self.elevated_at:
            raise PolicyError("adaptive: hysteresis must be in [0, elevated_at)")
        if not 0 <= self.equivalence_drop <= 1:
            raise PolicyError("adaptive: equivalence_drop must be in [0, 1]")
        if not 0 < self.step <= 1 or not 0 <= self.elevated_target <= 1:
            raise PolicyError("adaptive: step must be in (0, 1], elevated_target in [0, 1]")
        if self.min_dwell_s < 0:
            raise PolicyError("adaptive: min_dwell_s must be >= 0")


@dataclass
class LevelTracker:
    config: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    level: Level = "normal"
    since: float = 0.0

    def update(self, pressure: float, now: float) -> Level:
        c = self.config
        if pressure >= c.overloaded_at:
            wanted: Level = "overloaded"
        elif pressure >= c.elevated_at:
            wanted = "elevated"
        else:
            wanted = "normal"
        if LEVEL_VALUE[wanted] > LEVEL_VALUE[self.level]:
            self.level, self.since = wanted, now
        elif LEVEL_VALUE[wanted] < LEVEL_VALUE[self.level]:
            entry = c.overloaded_at if self.level == "overloaded" else c.elevated_at
            held = now - self.since >= c.min_dwell_s
            if held and pressure < entry - c.hysteresis:
                self.level, self.since = wanted, now
        return self.level


@dataclass(frozen=True)
class Adjustment:
    category: str
    relaxation: float
    threshold: float
    ttl_seconds: float  # how long after it was stored an entry may be served now
    cause: str


class PolicyAdapter:
    """Per-category relaxation, driven by the load levels of the tiers it uses."""

    def __init__(
        self, config: AdaptiveConfig | None = None, equivalence_default: float | None = None
    ) -> None:
        self.config = config or AdaptiveConfig()
        # The equivalence checker's own threshold, for policies that leave theirs unset.
        self.equivalence_default = equivalence_default
        self.relaxation: dict[str, float] = {}

    def target(self, tier_share: Mapping[str, float], levels: Mapping[str, Level]) -> float:
        """Relaxation wanted for a category whose misses split over tiers as ``tier_share``."""
        goal = {"normal": 0.0, "elevated": self.config.elevated_target, "overloaded": 1.0}
        total = sum(tier_share.values())
        if total <= 0:
            return 0.0
        return sum(
            share / total * goal[levels.get(tier, "normal")] for tier, share in tier_share.items()
        )

    def tick(
        self,
        policies: Mapping[str, CategoryPolicy],
        tier_shares: Mapping[str, Mapping[str, float]],
        levels: Mapping[str, Level],
    ) -> list[Adjustment]:
        """One step toward each category's target; returns the categories that moved."""
        moved: list[Adjustment] = []
        for category, policy in policies.items():
            if not adaptive(policy):
                self.relaxation.pop(category, None)
                continue
            current = self.relaxation.get(category, 0.0)
            goal = self.target(tier_shares.get(category, {}), levels)
            step = self.config.step
            new = min(goal, current + step) if goal > current else max(goal, current - step)
            if abs(new - current) < 1e-9:
                continue
            self.relaxation[category] = new
            eff = self.effective(category, policy)
            busy = sorted(t for t, lv in levels.items() if lv != "normal") or ["none"]
            cause = f"load on {', '.join(busy)}: relaxation {current:.2f} → {new:.2f}"
            served_ttl = eff.ttl_seconds * eff.ttl_stretch
            moved.append(Adjustment(category, new, eff.similarity_threshold, served_ttl, cause))
        return moved

    def effective(self, category: str, policy: CategoryPolicy) -> CategoryPolicy:
        r = self.relaxation.get(category, 0.0)
        if r <= 0 or not adaptive(policy):
            return policy
        floor = policy.threshold_floor
        threshold = policy.similarity_threshold
        equivalence = policy.equivalence_threshold
        if floor is not None:
            threshold -= r * (threshold - floor)
        base = equivalence if equivalence is not None else self.equivalence_default
        eq_floor = policy.equivalence_floor
        if eq_floor is not None and base is not None and base > eq_floor:
            equivalence = base - r * min(self.config.equivalence_drop, base - eq_floor)
        # ttl_seconds stays as configured (what new entries are written with); the
        # stretch acts at read time on entries already stored (stale-while-overloaded).
        stretch = min(policy.ttl_max_factor, 1 + r * (policy.ttl_max_factor - 1))
        return replace(
            policy,
            similarity_threshold=threshold,
            equivalence_threshold=equivalence,
            ttl_stretch=stretch,
            threshold_floor=min(floor, threshold) if floor is not None else None,
        )


def adaptive(policy: CategoryPolicy) -> bool:
    """Whether a policy has any room to move under load."""
    floor = policy.threshold_floor
    return (
        (floor is not None and floor < policy.similarity_threshold)
        or policy.ttl_max_factor > 1.0
        or policy.equivalence_floor is not None
    )


def stale_servable(created_at: float, expires_at: float, now: float, stretch: float) -> bool:
    """Whether an entry whose TTL has passed may still be served under ``stretch``:
    until ``stretch`` × its own TTL after it was stored."""
    return stretch > 1.0 and now < created_at + (expires_at - created_at) * stretch


def retained_until(created_at: float, expires_at: float, ttl_max_factor: float) -> float:
    """When the sweeper may remove an entry: a stretched TTL could serve it until then."""
    return created_at + (expires_at - created_at) * max(1.0, ttl_max_factor)
