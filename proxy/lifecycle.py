"""Graceful shutdown for ``cachegate serve``.

On SIGTERM (or the first SIGINT) readiness goes false at once, so a load balancer
polling ``/readyz`` stops sending traffic; after ``drain_s`` uvicorn stops
accepting, lets in-flight requests (streams included) finish within the grace
period, and runs the lifespan shutdown, which flushes the cache's write-behind
queue, the request log and the limit counters. The process then exits 0 (uvicorn
would otherwise re-raise the signal after shutting down and exit by it). A second
SIGINT forces an immediate exit.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("cachegate.lifecycle")


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, *, drain_s: float = 0.0) -> None:
        super().__init__(config)
        self.app = app
        self.drain_s = drain_s
        self.exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self.app.state, "services", None)
        if services is not None:
            services.ready = False
        if self.exit_at is not None:
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        log.info("signal %d: not ready; stopping in %.1f s", sig, self.drain_s)
        self.exit_at = time.monotonic() + self.drain_s
        if self.drain_s <= 0:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.exit_at is not None and time.monotonic() >= self.exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(
    app: FastAPI,
    *,
    host: str,
    port: int,
    log_level: str,
    grace_s: float,
    keep_alive_s: float,
    drain_s: float = 0.0,
) -> int:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(grace_s)),
        timeout_keep_alive=max(1, round(keep_alive_s)),
        access_log=False,
    )
    server = GracefulServer(config, app, drain_s=drain_s)
    server.run()
    return 0 if server.started else 3
