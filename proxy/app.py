"""The FastAPI application: services are built in the lifespan, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backends.embedding import Embedder
from backends.transport import Transport
from proxy import admin, routes_openai, routes_ops
from proxy.errors import RateLimited
from proxy.http import RequestIdMiddleware, install_error_handlers
from proxy.limits import on_rate_limited
from proxy.services import build_services
from proxy.settings import Settings

log = logging.getLogger("cachegate")


def create_app(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    transports: Mapping[str, Transport] | None = None,
    embedder: Embedder | None = None,
) -> FastAPI:
    """Build the app. ``transports`` and ``embedder`` are test seams (default: real ones)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings, env=env, transports=transports, embedder=embedder)
        app.state.services = services
        await admin.start_admin(services)
        services.ready = True
        services.metrics.up.set(1)
        log.info("cachegate ready on %s:%s", settings.server.host, settings.server.port)
        try:
            yield
        finally:
            services.metrics.up.set(0)
            await services.aclose()

    app = FastAPI(
        title="cachegate",
        summary="Semantic caching and routing proxy for OpenAI-compatible LLM backends",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.add_exception_handler(RateLimited, on_rate_limited)  # adds Retry-After
    app.include_router(routes_openai.router)
    app.include_router(routes_ops.router)
    admin.install(app)
    return app
