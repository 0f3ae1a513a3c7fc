"""A live cachegate in front of simulated backends, running in a background thread.

The official ``openai`` client (sync or async) talks to it over real loopback
HTTP from the test's own thread, exactly as a user's application would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import uvicorn

from backends.embedding import Embedder
from backends.sim import Faults, SimServer
from bench.procs import free_port
from proxy.app import create_app
from proxy.services import Services
from proxy.settings import Settings, settings_from_mapping

T = TypeVar("T")


def base_config(small_port: int, large_port: int, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "storage": {"url": "sqlite+aiosqlite:///:memory:"},
        "auth": {"require_keys": False},
        "circuit": {"failure_threshold": 3, "cooldown_s": 30},
        "backends": [
            {
                "name": "small",
                "tier": "small",
                "base_url": f"http://127.0.0.1:{small_port}/v1",
                "model": "sim-small",
                "timeout_s": 5,
                "retries": 1,
                "price": {"input_per_1k": 0.00015, "output_per_1k": 0.0006},
            },
            {
                "name": "large",
                "tier": "large",
                "base_url": f"http://127.0.0.1:{large_port}/v1",
                "model": "sim-large",
                "timeout_s": 5,
                "retries": 1,
                "price": {"input_per_1k": 0.0025, "output_per_1k": 0.01},
            },
        ],
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


class Stack:
    """Two simulated backends and a cachegate, all on loopback, in one thread."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        configure: Callable[[dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
        sim_faults: Faults | None = None,
    ) -> None:
        self.embedder = embedder
        self.small_port, self.large_port, self.port = free_port(), free_port(), free_port()
        cfg = base_config(self.small_port, self.large_port)
        cfg["server"]["port"] = self.port
        if configure is not None:
            configure(cfg)
        self.settings: Settings = settings_from_mapping(cfg)
        self.env = env or {}
        self.sim_faults = sim_faults or Faults(latency_scale=0.0)
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._error: BaseException | None = None
        self.app: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sim_url(self, tier: str) -> str:
        port = self.small_port if tier == "small" else self.large_port
        return f"http://127.0.0.1:{port}"

    def start(self) -> Stack:
        ready = threading.Event()

        async def main() -> None:
            small = await SimServer("small", self.sim_faults, port=self.small_port).start()
            large = await SimServer("large", self.sim_faults, port=self.large_port).start()
            app = create_app(self.settings, env=self.env, embedder=self.embedder)
            self.app = app
            self.loop = asyncio.get_running_loop()
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                timeout_keep_alive=max(1, round(self.settings.server.keep_alive_s)),
            )
            self._server = uvicorn.Server(config)
            serve = asyncio.create_task(self._server.serve())
            while not self._server.started and not serve.done():  # noqa: ASYNC110 (uvicorn exposes no event)
                await asyncio.sleep(0.01)
            ready.set()
            try:
                await serve
            finally:
                await small.stop()
                await large.stop()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # noqa: BLE001 (re-raised in the test thread by start())
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("cachegate did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("cachegate failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)

    def call(self, fn: Callable[[Services], Awaitable[T]]) -> T:
        """Runs ``fn(services)`` on the server's own loop (e.g. to flush the write queue)."""
        services: Services = self.app.state.services
        assert self.loop is not None, "start() the stack first"
        return asyncio.run_coroutine_threadsafe(fn(services), self.loop).result(10)

    def flush_writes(self) -> None:
        """Waits until every answer in the write-behind queue is stored."""

        async def flush(s: Services) -> None:
            if s.cache is not None:
                await s.cache.flush()

        self.call(flush)

    def apply_admin_feed(self) -> None:
        """Applies the admin change feed now, as the admin poller does every 0.25 s."""

        async def sync(s: Services) -> None:
            assert s.admin is not None, "the admin API is not running"
            async with s.admin.lock:
                await s.admin.sync()

        self.call(sync)

    def set_faults(self, tier: str, **faults: Any) -> None:
        r = httpx.post(f"{self.sim_url(tier)}/sim/config", json=faults, timeout=5)
        r.raise_for_status()

    def received(self, tier: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.sim_url(tier)}/sim/requests", timeout=5)
        r.raise_for_status()
        data: list[dict[str, Any]] = r.json()["received"]
        return data

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
