"""The services a running proxy holds on ``app.state``: built in the lifespan, closed on shutdown."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from backends import BatchingEmbedder, BatchLimits, OnnxEmbedder, SentenceTransformerEmbedder
from backends.backend import Backend, BackendSpec, Price
from backends.circuit import CircuitBreaker
from backends.embedding import Embedder
from backends.pool import BackendPool
from backends.sim import SimServer
from backends.transport import HttpTransport, Timeouts, Transport
from proxy.auth import Authenticator
from proxy.metrics import BackendCollector, Metrics
from proxy.settings import BackendSettings, EmbedderSettings, Settings


@dataclass
class Services:
    settings: Settings
    pool: BackendPool
    auth: Authenticator
    metrics: Metrics
    embedder: BatchingEmbedder
    sims: list[SimServer] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    ready: bool = False

    async def aclose(self) -> None:
        self.ready = False
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
        )
    circuit = CircuitBreaker(settings.circuit.failure_threshold, settings.circuit.cooldown_s)
    return Backend(spec, transport, circuit)


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
    )


async def build_services(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    transports: Mapping[str, Transport] | None = None,
    embedder: Embedder | None = None,
) -> Services:
    env = os.environ if env is None else env
    transports = transports or {}
    sims = [await start_simulation(b) for b in settings.backends if b.simulate]
    pool = BackendPool(
        build_backend(b, settings, env, transports.get(b.name)) for b in settings.backends
    )
    metrics = Metrics()
    metrics.add_collector(BackendCollector(lambda: [b.status() for b in pool.backends]))
    batching = BatchingEmbedder(
        embedder or build_embedder(settings.embedder),
        BatchLimits(settings.embedder.max_batch, settings.embedder.max_wait_ms / 1000),
    )
    await batching.start()
    return Services(
        settings=settings,
        pool=pool,
        auth=Authenticator.from_settings(settings, env),
        metrics=metrics,
        embedder=batching,
        sims=sims,
    )


async def start_simulation(cfg: BackendSettings) -> SimServer:
    """The embedded default's simulated backend, listening where ``base_url`` points."""
    url = urlsplit(cfg.base_url)
    assert cfg.simulate is not None
    sim = SimServer(cfg.simulate, host=url.hostname or "127.0.0.1", port=url.port or 80)
    return await sim.start()
