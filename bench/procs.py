"""Starting cachegate and simulated backends as separate processes for benchmarks.

Benchmarks measure from a load generator in their own process, so the proxy's
event loop is not shared with the client's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "proxy.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


@contextmanager
def sim_backend(profile: str, *extra: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "sim-backend", "--profile", profile, "--port", str(port), *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def proxy_config(small_url: str, large_url: str, db: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": free_port()},
        "storage": {"url": f"sqlite+aiosqlite:///{db}"},
        "auth": {"require_keys": False},
        "backends": [
            {"name": "small", "tier": "small", "base_url": small_url, "model": "sim-small",
             "max_concurrency": 512},
            {"name": "large", "tier": "large", "base_url": large_url, "model": "sim-large",
             "max_concurrency": 512},
        ],
    }  # fmt: skip
    cfg.update(extra)
    return cfg


@contextmanager
def cachegate(cfg: dict[str, Any]) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "CACHEGATE_CONFIG": str(path)}
        subprocess.run([*CLI, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
        proc = subprocess.Popen([*CLI, "--log-level", "warning", "serve"], cwd=ROOT, env=env)
        url = f"http://127.0.0.1:{cfg['server']['port']}"
        try:
            wait_http(url + "/readyz")
            yield url + "/v1"
        finally:
            proc.terminate()
            proc.wait(15)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
