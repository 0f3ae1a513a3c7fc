"""Prometheus metrics, one registry per app (so several apps can live in one process).

Names follow Prometheus conventions: ``cachegate_`` prefix, base units
(seconds, bytes, dollars), ``_total`` on counters. Backend and cache gauges are
read at scrape time by a collector rather than updated on the request path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from backends.backend import BackendStatus
from cache import CacheCounters, CategoryStats

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60,
)  # fmt: skip
SIMILARITY_BUCKETS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0)
CIRCUIT_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cachegate_requests",
            "Requests answered, by endpoint, status, category, cache result and backend.",
            ["endpoint", "status", "category", "cache", "backend"],
            registry=r,
        )
        self.request_duration = Histogram(
            "cachegate_request_duration_seconds",
            "End-to-end request latency (to the last byte).",
            ["endpoint", "cache"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "cachegate_stage_duration_seconds",
            "Latency per request-path stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_lookups = Counter(
            "cachegate_cache_lookups",
            "Cache lookups by category and result (hit, miss, bypass, error).",
            ["category", "result"],
            registry=r,
        )
        self.hit_similarity = Histogram(
            "cachegate_cache_hit_similarity",
            "Cosine similarity of served semantic hits.",
            ["category"],
            buckets=SIMILARITY_BUCKETS,
            registry=r,
        )
        self.tokens_saved = Counter(
            "cachegate_tokens_saved",
            "Tokens not sent to a backend thanks to cache hits.",
            ["kind"],
            registry=r,
        )
        self.cost_saved = Counter(
            "cachegate_cost_saved_dollars",
            "Backend cost avoided by cache hits, at configured prices.",
            registry=r,
        )
        self.cache_errors = Counter(
            "cachegate_cache_errors",
            "Cache store failures (the cache fails open).",
            ["operation"],
            registry=r,
        )
        self.router_decisions = Counter(
            "cachegate_router_decisions",
            "Routing decisions by tier and reason.",
            ["tier", "reason"],
            registry=r,
        )
        self.backend_requests = Counter(
            "cachegate_backend_requests",
            "Calls to backends by backend, tier and outcome.",
            ["backend", "tier", "outcome"],
            registry=r,
        )
        self.backend_tokens = Counter(
            "cachegate_backend_tokens",
            "Tokens processed by backends.",
            ["backend", "kind"],
            registry=r,
        )
        self.backend_cost = Counter(
            "cachegate_backend_cost_dollars",
            "Backend cost at configured prices.",
            ["backend"],
            registry=r,
        )
        self.coalesced = Counter(
            "cachegate_coalesced",
            "Misses that waited for an equivalent request's backend call, by category and "
            "outcome (served: its answer; retried: it failed, the follower went on; "
            "timeout: it took longer than cache.coalesce.max_wait_s).",
            ["category", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "cachegate_backend_fallbacks",
            "Requests answered by another backend than the one chosen first.",
            ["from_tier", "to_tier"],
            registry=r,
        )
        self.load_level = Gauge(
            "cachegate_load_level",
            "Load level per backend tier: 0 normal, 1 elevated, 2 overloaded.",
            ["backend"],
            registry=r,
        )
        self.effective_threshold = Gauge(
            "cachegate_policy_effective_threshold",
            "Similarity threshold in force per category (after load adaptation).",
            ["category"],
            registry=r,
        )
        self.effective_ttl_stretch = Gauge(
            "cachegate_policy_ttl_stretch",
            "TTL stretch in force per category (1 = configured TTL; above 1, expired "
            "entries of the category are served up to this many TTLs after storing).",
            ["category"],
            registry=r,
        )
        self.build_info = Info("cachegate_build", "cachegate build information.", registry=r)
        self.build_info.info({"version": _version()})
        # Which model embeds (and so which vector space the cache holds): set at start-up.
        self.embedder_info = Info("cachegate_embedder", "The embedding model in use.", registry=r)
        self.up = Gauge("cachegate_up", "1 while the proxy is serving.", registry=r)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BackendCollector(Collector):
    """Backend gauges (in-flight, circuit state, EWMA latency) read at scrape time."""

    def __init__(self, statuses: Callable[[], Iterable[BackendStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "cachegate_backend_in_flight", "Requests in flight per backend.", labels=["backend"]
        )
        circuit = GaugeMetricFamily(
            "cachegate_backend_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            labels=["backend"],
        )
        ttft = GaugeMetricFamily(
            "cachegate_backend_ttft_ewma_seconds",
            "Time to first token, exponentially weighted.",
            labels=["backend"],
        )
        overloaded = GaugeMetricFamily(
            "cachegate_backend_overloaded", "1 when a backend looks overloaded.", labels=["backend"]
        )
        for s in self._statuses():
            in_flight.add_metric([s.name], s.in_flight)
            circuit.add_metric([s.name], CIRCUIT_VALUE[s.circuit])
            ttft.add_metric([s.name], s.ewma_ttft_s)
            overloaded.add_metric([s.name], 1.0 if s.overloaded else 0.0)
        yield from (in_flight, circuit, ttft, overloaded)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def _version() -> str:
    try:
        return version("cachegate")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class CacheSnapshot:
    """The cache's figures as of the last scrape (read on the index thread, not here)."""

    counters: CacheCounters | None = None
    stats: list[CategoryStats] = field(default_factory=list)
    available: bool = False
    #: ``False`` while the store is re-embedded for this replica's embedder, and once
    #: another replica changed the embedder under it.
    serving: bool = True


class CacheCollector(Collector):
    """Cache entries, bytes, evictions, expirations, write drops and store health."""

    def __init__(self, snapshot: Callable[[], CacheSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        up = GaugeMetricFamily("cachegate_cache_store_up", "1 when the cache's store is reachable.")
        up.add_metric([], 1.0 if snap.available else 0.0)
        yield up
        serving = GaugeMetricFamily(
            "cachegate_cache_serving",
            "0 while this replica bypasses its cache because of an embedder change: the "
            "store is being re-embedded for it, or another replica gave the store another "
            "embedder's vectors (restart this one with that embedder).",
        )
        serving.add_metric([], 1.0 if snap.serving else 0.0)
        yield serving
        entries = GaugeMetricFamily(
            "cachegate_cache_entries", "Live cache entries per category.", labels=["category"]
        )
        size = GaugeMetricFamily(
            "cachegate_cache_bytes", "Approximate bytes of live entries.", labels=["category"]
        )
        evictions = CounterMetricFamily(
            "cachegate_cache_evictions", "Entries evicted by quota.", labels=["category"]
        )
        expirations = CounterMetricFamily(
            "cachegate_cache_expirations", "Entries expired by TTL.", labels=["category"]
        )
        per: dict[str, list[int]] = {}
        for st in snap.stats:
            row = per.setdefault(st.category, [0, 0, 0, 0])
            row[0] += st.entries
            row[1] += st.bytes
            row[2] += st.evictions
            row[3] += st.expirations
        for category, (n, b, ev, ex) in sorted(per.items()):
            entries.add_metric([category], n)
            size.add_metric([category], b)
            evictions.add_metric([category], ev)
            expirations.add_metric([category], ex)
        yield from (entries, size, evictions, expirations)
        drops = CounterMetricFamily(
            "cachegate_cache_write_drops",
            "Answers not stored: write-behind queue full or store unreachable.",
            labels=["reason"],
        )
        c = snap.counters
        drops.add_metric(["queue_full"], c.dropped_queue_full if c else 0)
        drops.add_metric(["store_error"], c.dropped_store_error if c else 0)
        yield drops
        verdicts = CounterMetricFamily(
            "cachegate_equivalence_verdicts",
            "Equivalence checks of semantic candidates by outcome: accepted, "
            "below_threshold, identical, or veto_<kind> (number, operator, negation, unit, "
            "entity, opposite, question, order): why candidates were refused.",
            labels=["outcome"],
        )
        for outcome, count in sorted((c.verdicts if c else {}).items()):
            verdicts.add_metric([outcome], count)
        yield verdicts

    def describe(self) -> Iterator[Metric]:
        return iter(())
