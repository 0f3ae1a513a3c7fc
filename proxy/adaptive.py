"""Drives load-adaptive cache policies from what the backend pool sees.

Every ``interval_s`` the controller reads each tier's load (in-flight against
``max_concurrency``, EWMA time to first token against its SLO, 429 rate),
turns it into a level with hysteresis, and steps each category's relaxation
toward what the levels of the tiers its misses go to call for. The request
path asks :meth:`AdaptiveController.effective` for the policy to use: a
relaxed one may have a lower cosine floor, a lower equivalence threshold
(categories with an ``equivalence_floor``) and a ``ttl_stretch`` above 1, under
which lookups also serve the category's expired entries up to that many TTLs
after they were stored. New entries are always written with the configured TTL.

Order with load-aware routing (documented in the README): routing acts per
request and moves a miss away from an overloaded tier when the other tier is
usable; relaxation acts per category at lookup time, before routing, so a
relaxed hit never reaches any backend. When both tiers are loaded only the
cache relaxation sheds traffic.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from backends.backend import Tier
from backends.pool import BackendPool
from cache import CategoryPolicy, PolicySet
from cache.adaptive import (
    LEVEL_VALUE,
    AdaptiveConfig,
    Adjustment,
    Level,
    LevelTracker,
    LoadSignal,
    PolicyAdapter,
)
from proxy.metrics import Metrics

log = logging.getLogger("cachegate.adaptive")

# Figures seen while a backend is idle decay with this time constant: a tier
# that the cache shields from traffic must still be able to look healthy again.
IDLE_DECAY_S = 5.0
SHARE_ALPHA = 0.05


@dataclass
class TierShares:
    """Per category, the EWMA share of its misses that went to each tier."""

    shares: dict[str, dict[str, float]]

    def record(self, category: str, tier: str) -> None:
        current = self.shares.get(category)
        if current is None:  # the first miss sets the split; later ones move it slowly
            self.shares[category] = {t: 1.0 if t == tier else 0.0 for t in ("small", "large")}
            return
        for t in ("small", "large"):
            old = current.get(t, 0.0)
            current[t] = old + SHARE_ALPHA * ((1.0 if t == tier else 0.0) - old)


class AdaptiveController:
    def __init__(
        self,
        pool: BackendPool,
        policies: Callable[[], PolicySet],
        metrics: Metrics,
        config: AdaptiveConfig | None = None,
        *,
        equivalence_default: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.policies = policies
        self.metrics = metrics
        self.adapter = PolicyAdapter(config, equivalence_default)
        self.trackers: dict[Tier, LevelTracker] = {
            t: LevelTracker(self.adapter.config) for t in ("small", "large")
        }
        self.shares = TierShares({})
        self.clock = clock
        self.log: list[Adjustment] = []

    def signal(self, tier: Tier) -> LoadSignal | None:
        """The least-loaded available backend of the tier (a tier is as loaded as its best)."""
        best: LoadSignal | None = None
        for b in self.pool.tier(tier):
            if not b.circuit.available():
                continue
            decay = math.exp(-b.idle_for() / IDLE_DECAY_S)
            s = LoadSignal(
                in_flight=b.load.in_flight,
                max_concurrency=b.spec.max_concurrency,
                ttft_ewma_s=b.load.ewma_ttft_s * decay,
                ttft_slo_s=b.spec.ttft_slo_s,
                throttle_rate=b.load.ewma_throttle_rate * decay,
            )
            if best is None or s.pressure < best.pressure:
                best = s
        return best

    def levels(self) -> dict[str, Level]:
        return {t: tr.level for t, tr in self.trackers.items()}

    def tick(self) -> list[Adjustment]:
        now = self.clock()
        for tier, tracker in self.trackers.items():
            sig = self.signal(tier)
            before = tracker.level
            # A tier with nothing available is not "overloaded": routing fails it over.
            after = tracker.update(sig.pressure if sig else 0.0, now)
            if after != before:
                log.info("load level of %s tier: %s → %s", tier, before, after)
            self.metrics.load_level.labels(tier).set(LEVEL_VALUE[after])
        policy_set = self.policies()
        moved = self.adapter.tick(policy_set.policies, self.shares.shares, self.levels())
        for adj in moved:
            log.info(
                "policy %s: threshold %.3f, expired entries served up to %.0fs old (%s)",
                adj.category, adj.threshold, adj.ttl_seconds, adj.cause,
            )  # fmt: skip
        self.log.extend(moved)
        del self.log[:-1000]
        for name, policy in policy_set.policies.items():
            eff = self.effective(name, policy)
            self.metrics.effective_threshold.labels(name).set(eff.similarity_threshold)
            self.metrics.effective_ttl_stretch.labels(name).set(eff.ttl_stretch)
        return moved

    def effective(self, category: str, policy: CategoryPolicy) -> CategoryPolicy:
        return self.adapter.effective(category, policy)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.tick()
