"""The services a running proxy holds on ``app.state``: built in the lifespan, closed on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from backends import (
    BatchingEmbedder,
    BatchLimits,
    EmbedderError,
    Matrix,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
)
from backends.backend import Backend, BackendSpec, Price
from backends.circuit import CircuitBreaker
from backends.embedding import Embedder
from backends.pool import BackendPool
from backends.sim import SimServer
from backends.space import probe, reference_probe
from backends.transport import HttpTransport, Timeouts, Transport
from cache import (
    CacheError,
    CacheUnavailable,
    CategoryPolicy,
    EquivalenceChecker,
    InFlight,
    PolicySet,
    SemanticCache,
    SpaceMismatch,
    VectorSpace,
)
from cache.vector_space import SAME_SPACE_COSINE, Reembed
from classifier import Classifier
from proxy.adaptive import AdaptiveController
from proxy.auth import Authenticator
from proxy.errors import SettingsError, Unavailable
from proxy.feedback import ResponseLog
from proxy.limits import Limiter
from proxy.limits_store import OpsStore
from proxy.metrics import BackendCollector, CacheCollector, CacheSnapshot, Metrics
from proxy.privacy import Privacy
from proxy.request_log import RequestLog
from proxy.settings import BackendSettings, EmbedderSettings, PrivacySettings, Settings
from proxy.sqlengine import is_memory
from proxy.wiring import (
    build_adaptive,
    build_definitions,
    build_policies,
    build_router_config,
)
from router import (
    ExampleConfig,
    Judge,
    Router,
    RouterConfig,
    SharedUtilities,
    UtilityModel,
    load_router,
)

if TYPE_CHECKING:  # the admin state imports this module; types only here
    from proxy.admin.state import AdminState

log = logging.getLogger("cachegate.services")

CACHE_RETRY_S = 5.0
ROUTER_SCORES_KEPT = 10_000  # recent router scores, for calibrating to a target large share


@dataclass
class Services:
    settings: Settings
    pool: BackendPool
    auth: Authenticator
    metrics: Metrics
    embedder: BatchingEmbedder
    space: VectorSpace  # the embedder's vector space (checked against the cache store)
    policies: PolicySet
    router_config: RouterConfig
    examples: ExampleConfig
    classifier: Classifier | None = None
    router: Router | None = None
    cache: SemanticCache | None = None
    inflight: InFlight | None = None  # single-flight for misses (cache.coalesce)
    responses: ResponseLog = field(default_factory=ResponseLog)
    utilities: UtilityModel = field(default_factory=UtilityModel)
    shared_utilities: SharedUtilities | None = None  # SQL, shared by replicas
    judge: Judge | None = None
    sims: list[SimServer] = field(default_factory=list)
    admin: AdminState | None = None
    router_scores: deque[float] = field(default_factory=lambda: deque(maxlen=ROUTER_SCORES_KEPT))
    started_at: float = field(default_factory=time.time)
    ready: bool = False
    adaptive: AdaptiveController | None = None
    checker: EquivalenceChecker | None = None
    cache_snapshot: CacheSnapshot = field(default_factory=CacheSnapshot)
    privacy: Privacy = field(default_factory=lambda: Privacy(PrivacySettings()))
    ops_store: OpsStore | None = None  # usage counters and the request log
    limits: Limiter | None = None
    request_log: RequestLog | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _reconnects: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: The store is being re-embedded for this embedder; the cache opens when it is done.
    cache_reembedding: bool = False

    async def refresh_cache_snapshot(self) -> None:
        """Reads the cache's figures for the next scrape (on the cache's own thread)."""
        cache = self.cache
        if cache is None:
            # Re-embedding reads and writes the store: it is up, the cache just not serving.
            reembedding = self.cache_reembedding
            self.cache_snapshot = CacheSnapshot(available=reembedding, serving=not reembedding)
            return
        try:
            stats = await cache.stats()
        except CacheError as exc:
            log.warning("cache stats unavailable: %s", exc)
            stats = self.cache_snapshot.stats
        counters = cache.counters()
        self.cache_snapshot = CacheSnapshot(
            counters, stats, counters.store_available, counters.space_current
        )

    def effective_policy(self, category: str) -> CategoryPolicy:
        configured = self.policies.for_category(category)
        if self.adaptive is None:
            return configured
        return self.adaptive.effective(category, configured)

    async def aclose(self) -> None:
        self.ready = False
        self.stopping.set()
        for task in self._reconnects:
            await task  # each returns at its next wait: never cut mid-connect
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.judge is not None:
            await self.judge.close()  # best effort: never holds a shutdown
        if self.admin is not None:
            await self.admin.close()
        if self.cache is not None:
            await self.cache.close()  # flushes the write-behind queue
        await close_ops(self)
        await self.embedder.close()
        await self.pool.aclose()
        for sim in self.sims:
            await sim.stop()


def build_backend(
    cfg: BackendSettings, settings: Settings, env: Mapping[str, str], transport: Transport | None
) -> Backend:
    spec = BackendSpec(
        name=cfg.name,
        tier=cfg.tier,
        model=cfg.model,
        price=Price(cfg.price.input_per_1k, cfg.price.output_per_1k),
        max_concurrency=cfg.max_concurrency,
        retries=cfg.retries,
        ttft_slo_s=cfg.ttft_slo_s,
        aliases=cfg.aliases,
    )
    if transport is None:
        api_key = env.get(cfg.api_key_env) if cfg.api_key_env else None
        transport = HttpTransport(
            cfg.name,
            cfg.base_url,
            api_key=api_key,
            timeouts=Timeouts(cfg.connect_timeout_s, cfg.read_timeout_s, cfg.timeout_s),
            max_connections=max(cfg.max_concurrency * 2, 16),
            keepalive_s=cfg.keepalive_s,
        )
    circuit = CircuitBreaker(settings.circuit.failure_threshold, settings.circuit.cooldown_s)
    return Backend(spec, transport, circuit)


def check_space(settings: Settings, space: VectorSpace) -> None:
    """Refuses an embedder whose vectors are not the space the enabled learned parts
    (classifier, equivalence check, router: all fitted on all-MiniLM-L6-v2) read."""
    fit = space.agreement(VectorSpace("all-MiniLM-L6-v2", reference_probe()))
    if fit >= SAME_SPACE_COSINE:
        return
    parts = [
        name
        for name, on in (
            ("classifier.enabled", settings.classifier.enabled),
            (
                "cache.equivalence_check",
                settings.cache.enabled and settings.cache.equivalence_check,
            ),
            ("router.enabled", settings.router.enabled),
        )
        if on
    ]
    if parts:
        raise SettingsError(
            f"embedder {space.name!r} does not write the all-MiniLM-L6-v2 vectors that the "
            f"bundled classifier, equivalence check and router were fitted on (probe "
            f"agreement {fit:.2f} < {SAME_SPACE_COSINE}); set {', '.join(parts)} to false, "
            "or use the bundled embedder"
        )
    log.warning(
        "embedder %r writes another vector space than the bundled all-MiniLM-L6-v2 (probe "
        "agreement %.2f): the policies' similarity thresholds were tuned on MiniLM",
        space.name,
        fit,
    )


def build_embedder(cfg: EmbedderSettings) -> Embedder:
    if cfg.kind == "sentence-transformers":
        if cfg.model_path is None:
            raise ValueError("embedder.model_path is required for kind sentence-transformers")
        device = "cuda" if cfg.device == "cuda" else "cpu"
        return SentenceTransformerEmbedder(cfg.model_path, device=device, max_tokens=cfg.max_tokens)
    return OnnxEmbedder(
        cfg.model_path,
        cfg.tokenizer_path,
        max_tokens=cfg.max_tokens,
        device=cfg.device,
        threads=cfg.threads,
        quantize=cfg.quantize,
    )


async def open_cache(
    settings: Settings,
    space: VectorSpace,
    checker: EquivalenceChecker | None,
    reembed: Reembed | None = None,
    *,
    migrate: bool = True,
) -> SemanticCache:
    """Opens the cache store. With ``on_embedder_change: reembed`` a store of another
    embedder is re-embedded only when ``reembed`` is given (in the background, by
    :func:`_keep_opening_cache`); without it such a store is refused (:class:`SpaceMismatch`)
    and left as it is. ``migrate=False`` skips the migrations (done already: Alembic's
    module-level context must not run twice at once in one process)."""
    cfg = settings.cache
    on_change = cfg.on_embedder_change
    if on_change == "reembed" and reembed is None:
        on_change = "refuse"
    return await SemanticCache.open(
        settings.storage.url,
        dim=int(space.probe.shape[1]),
        space=space,
        on_space_change=on_change,
        reembed=reembed,
        auto_migrate=migrate,
        snapshot_dir=settings.storage.snapshot_dir,
        snapshot_interval_s=cfg.snapshot_interval_s,
        checker=checker,
        write_queue_size=cfg.write_queue_size,
        sync_interval_s=cfg.sync_interval_s,
        sweep_interval_s=cfg.sweep_interval_s,
        candidates=cfg.candidates,
    )


async def _keep_opening_cache(services: Services, *, reembedding: bool = False) -> None:
    """Serves without a cache until it opens, trying every ``CACHE_RETRY_S``.

    Started when the store was down at start-up, or (``reembedding``) when it holds
    another embedder's entries and ``on_embedder_change: reembed`` embeds them again:
    that happens here, in the background, and a store outage only pauses it (it resumes
    where it stopped). Waits on ``services.stopping`` rather than being cancelled: a
    connection attempt abandoned half-way would finish on the driver's thread after the
    event loop has closed.
    """
    services.cache_reembedding = reembedding
    wait = not reembedding  # a re-embedding starts at once
    try:
        while services.cache is None:
            if wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(services.stopping.wait(), CACHE_RETRY_S)
            wait = True
            if services.stopping.is_set():
                return
            try:
                services.cache = await open_cache(
                    services.settings,
                    services.space,
                    services.checker,
                    _reembedder(services),
                    # A re-embedding follows an attempt that migrated, while start-up may
                    # still be migrating the other stores.
                    migrate=not reembedding,
                )
                log.info("cache opened; caching resumed")
            except CacheUnavailable as exc:
                log.warning("cache store still unreachable: %s", exc)
            except CacheError as exc:  # another embedder's store, a failed re-embedding
                if services.stopping.is_set():
                    log.info("%s", exc)  # shutdown mid-way: the store keeps the progress
                else:
                    log.error("serving without cache: %s", exc)
                return
    finally:
        services.cache_reembedding = False


def _reembedder(services: Services) -> Reembed | None:
    """The re-embedding function of ``on_embedder_change: reembed`` (``None`` otherwise):
    the service's embedder, one page at a time; it stops between pages once the service
    is stopping (the store keeps the progress; the next start resumes)."""
    if services.settings.cache.on_embedder_change != "reembed":
        return None

    async def reembed(texts: Sequence[str]) -> Matrix:
        if services.stopping.is_set():
            raise CacheError("re-embedding interrupted by shutdown; the next start resumes it")
        # In batches of the request path's size: one call on a whole page was slower per
        # text (133/s against 167/s at 64 on this 2-core machine).
        step = services.settings.embedder.max_batch
        try:
            parts = [
                await services.embedder.embed_many(texts[i : i + step])
                for i in range(0, len(texts), step)
            ]
        except EmbedderError as exc:
            raise CacheError(f"re-embedding the cache failed: {exc}") from exc
        return np.concatenate(parts) if parts else np.zeros((0, services.embedder.dim), np.float32)

    return reembed


async def build_services(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    transports: Mapping[str, Transport] | None = None,
    embedder: Embedder | None = None,
) -> Services:
    env = os.environ if env is None else env
    transports = transports or {}
    model: Embedder = (
        embedder
        if embedder is not None
        else await asyncio.to_thread(build_embedder, settings.embedder)
    )
    space = VectorSpace(model.name, await asyncio.to_thread(probe, model))
    check_space(settings, space)
    sims = [await start_simulation(b) for b in settings.backends if b.simulate]
    pool = BackendPool(
        build_backend(b, settings, env, transports.get(b.name)) for b in settings.backends
    )
    metrics = Metrics()
    metrics.embedder_info.info({"name": model.name, "dim": str(model.dim)})
    metrics.add_collector(BackendCollector(lambda: [b.status() for b in pool.backends]))
    batching = BatchingEmbedder(
        model, BatchLimits(settings.embedder.max_batch, settings.embedder.max_wait_ms / 1000)
    )
    await batching.start()
    router_config, examples = build_router_config(settings.router)
    services = Services(
        settings=settings,
        pool=pool,
        auth=Authenticator.from_settings(settings, env),
        metrics=metrics,
        embedder=batching,
        space=space,
        policies=build_policies(settings.cache),
        router_config=router_config,
        examples=examples,
        sims=sims,
    )
    metrics.add_collector(CacheCollector(lambda: services.cache_snapshot))
    try:
        await _open_parts(services, model)
    except BaseException:
        await services.aclose()  # what started before the failure (batcher, tasks, stores)
        raise
    return services


async def _open_parts(services: Services, model: Embedder) -> None:
    """Loads the learned parts and opens the stores; the cache last, after everything
    it is handed (checker, single-flight) exists."""
    settings = services.settings
    if settings.classifier.enabled:
        load = partial(
            Classifier.load_default, model.embed_batch, extra=build_definitions(settings.categories)
        )
        if settings.classifier.min_confidence is not None:
            load = partial(load, min_confidence=settings.classifier.min_confidence)
        services.classifier = await asyncio.to_thread(load)
    if settings.router.enabled:
        services.router = await asyncio.to_thread(
            load_router, settings.router.artifact, services.router_config
        )
    if settings.cache.enabled and settings.cache.equivalence_check:
        services.checker = await asyncio.to_thread(EquivalenceChecker.load_default)
    if settings.adaptive.enabled:
        services.adaptive = AdaptiveController(
            services.pool,
            lambda: services.policies,
            services.metrics,
            build_adaptive(settings.adaptive),
            equivalence_default=services.checker.default_threshold if services.checker else None,
        )
        services._tasks.append(
            asyncio.create_task(services.adaptive.run(settings.adaptive.interval_s))
        )
    await open_ops(services)
    if settings.router.enabled:
        # Imported here: proxy.judging builds on this module (and on proxy.relay).
        from proxy.judging import build_judge, open_shared_utilities

        await open_shared_utilities(services, create_table=is_memory(settings.storage.url))
        services.judge = build_judge(services)
    if settings.cache.enabled:
        if settings.cache.coalesce.enabled:
            services.inflight = InFlight(
                services.checker, max_wait_s=settings.cache.coalesce.max_wait_s
            )
        try:
            services.cache = await open_cache(settings, services.space, services.checker)
        except CacheUnavailable as exc:
            log.error("cache store unreachable at start-up, serving without cache: %s", exc)
            services._reconnects.append(asyncio.create_task(_keep_opening_cache(services)))
        except SpaceMismatch as exc:
            if settings.cache.on_embedder_change != "reembed":
                raise
            # Start now and serve without the cache: a large store takes minutes to embed
            # again, longer than a start-up may (probes, load balancers).
            log.warning("serving without cache while it is re-embedded: %s", exc)
            services.cache_reembedding = True
            task = _keep_opening_cache(services, reembedding=True)
            services._reconnects.append(asyncio.create_task(task))


async def open_ops(services: Services) -> None:
    """Usage limits and the request log share one store; when it is down at start-up
    limits are enforced per replica and log rows are dropped until it is back."""
    settings, registry = services.settings, services.metrics.registry
    services.privacy = Privacy(settings.privacy)
    store = services.ops_store = OpsStore(settings.storage.url)
    try:
        await store.prepare()
    except Unavailable as exc:
        log.error("limits/request-log store unreachable at start-up: %s", exc)
    services.limits = Limiter(settings.limits, store, registry)
    services.request_log = RequestLog(store, settings.privacy, registry)
    # Loops that stop at their next wait when ``stopping`` is set (never cancelled).
    services._reconnects.append(asyncio.create_task(services.limits.run(services.stopping)))
    services._reconnects.append(asyncio.create_task(services.request_log.run(services.stopping)))


async def close_ops(services: Services) -> None:
    """Sends the last limit deltas and writes the queued log rows (after the run tasks
    were cancelled), then closes the store."""
    if services.limits is not None:
        await services.limits.close()
    if services.request_log is not None:
        await services.request_log.close()
    if services.ops_store is not None:
        await services.ops_store.close()


async def start_simulation(cfg: BackendSettings) -> SimServer:
    """The embedded default's simulated backend, listening where ``base_url`` points."""
    url = urlsplit(cfg.base_url)
    assert cfg.simulate is not None
    sim = SimServer(cfg.simulate, host=url.hostname or "127.0.0.1", port=url.port or 80)
    return await sim.start()
