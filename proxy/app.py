"""The FastAPI application: services are built in the lifespan, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.embedding import Embedder
from backends.errors import EmbedderError
from backends.transport import Transport
from cache import CacheError
from classifier import ClassifierError
from proxy import admin, routes_openai, routes_ops
from proxy.errors import RateLimited, SettingsError
from proxy.http import AdminJsonMiddleware, RequestIdMiddleware, install_error_handlers
from proxy.limits import on_rate_limited
from proxy.services import build_services
from proxy.settings import Settings
from router import RouterError

log = logging.getLogger("cachegate")


# What a configuration or the files it names can get wrong at start-up (a bad value, an
# unreadable artifact or model, a store of another embedder): the message says what to
# change, so it is reported in one line rather than as a traceback.
STARTUP_ERRORS = (SettingsError, CacheError, ClassifierError, RouterError, EmbedderError)


class StartupErrorMiddleware:
    """Replaces the traceback Starlette sends with a failed start-up by the error's own
    message, for :data:`STARTUP_ERRORS` (uvicorn logs it and exits with status 3)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_plain(message: Message) -> None:
            error = getattr(scope["app"].state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and error is not None:
                message = {**message, "message": f"cachegate cannot start: {error}"}
            await send(message)

        await self.app(scope, receive, send_plain)


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
        try:
            services = await build_services(
                settings, env=env, transports=transports, embedder=embedder
            )
        except STARTUP_ERRORS as exc:
            app.state.startup_error = exc  # reported in one line by StartupErrorMiddleware
            raise
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
    app.add_middleware(AdminJsonMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(StartupErrorMiddleware)
    install_error_handlers(app)
    app.add_exception_handler(RateLimited, on_rate_limited)  # adds Retry-After
    app.include_router(routes_openai.router)
    app.include_router(routes_ops.router)
    admin.install(app)
    return app
