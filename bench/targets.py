"""Processes the replay drives: simulated backends, cachegate, the GPTCache baseline server.

Each is a context manager that starts one subprocess, waits until it answers, yields its
``/v1`` base URL and stops it. Unlike ``bench.procs`` these notice a process that died while
starting and raise with the end of its log instead of waiting out a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.procs import ROOT, free_port

PY = sys.executable
# Prices of deploy/config/default.yaml, in dollars per 1k tokens (input, output).
PRICES = {"small": (0.00015, 0.0006), "large": (0.0025, 0.01)}


class TargetError(RuntimeError):
    """A benchmark process did not start."""


# Process ids of the running cachegates by their /v1 URL, for CPU accounting.
_PIDS: dict[str, int] = {}


def cpu_seconds(url: str) -> float:
    """User + system CPU seconds the cachegate serving ``url`` has used so far (Linux).

    CPU per request is what a benchmark on a shared machine can still compare: wall
    latencies move with whatever else runs, the work a request costs does not."""
    fields = Path(f"/proc/{_PIDS[url]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def artifact_present(package: str, name: str) -> bool:
    """Whether a package's trained artifact (``<pkg>/data/<name>``) is committed yet."""
    return resources.files(package).joinpath("data", name).is_file()


@contextmanager
def _process(cmd: list[str], ready_url: str, env: dict[str, str] | None = None,
             timeout: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    raise TargetError(f"{' '.join(cmd[:4])} exited with {proc.returncode}:\n{tail}")
                try:
                    if httpx.get(ready_url, timeout=1).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TargetError(f"{ready_url} did not come up within {timeout:.0f} s")
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def sim(profile: str, latency_scale: float = 1.0, answer_tokens: int = 64,
        max_concurrency: int | None = None) -> Iterator[str]:  # fmt: skip
    port = free_port()
    cmd = [PY, "-m", "bench.simserver", "--profile", profile, "--port", str(port),
           "--answer-tokens", str(answer_tokens), "--latency-scale", str(latency_scale)]  # fmt: skip
    if max_concurrency:
        cmd += ["--max-concurrency", str(max_concurrency)]
    with _process(cmd, f"http://127.0.0.1:{port}/v1/models"):
        yield f"http://127.0.0.1:{port}/v1"


def cachegate_config(
    small_url: str,
    large_url: str,
    db: Path,
    *,
    default_policy: dict[str, Any] | None = None,
    equivalence: bool = True,
    router: bool = True,
    quantize: str = "none",
) -> dict[str, Any]:
    """A bench config: both sims with the default prices, keys off on loopback.

    ``max_tokens`` is left out of the fingerprint (the policy's ``sampling_params``): the
    replay sends each trace request's own output length, and a cache that keyed on it would
    never hit across requests, nor produce the false hits it has to be judged on.
    """
    backends = [
        {"name": tier, "tier": tier, "base_url": url, "model": f"sim-{tier}",
         "max_concurrency": 512, "price": {"input_per_1k": PRICES[tier][0],
                                           "output_per_1k": PRICES[tier][1]}}
        for tier, url in (("small", small_url), ("large", large_url))
    ]  # fmt: skip
    policy = {"sampling_params": ["temperature", "top_p", "seed"], **(default_policy or {})}
    return {
        "server": {"host": "127.0.0.1", "port": free_port()},
        "storage": {"url": f"sqlite+aiosqlite:///{db}"},
        "auth": {"require_keys": False},
        "backends": backends,
        "cache": {"equivalence_check": equivalence, "default_policy": policy},
        "router": {"enabled": router},
        "embedder": {"quantize": quantize},
    }


@contextmanager
def cachegate(cfg: dict[str, Any]) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "CACHEGATE_CONFIG": str(path)}
        cli = [PY, "-m", "proxy.cli"]
        done = subprocess.run([*cli, "migrate"], cwd=ROOT, env=env, capture_output=True)
        if done.returncode:
            raise TargetError(f"cachegate migrate failed:\n{done.stderr.decode()[-3000:]}")
        base = f"http://127.0.0.1:{cfg['server']['port']}"
        with _process([*cli, "--log-level", "warning", "serve"], base + "/readyz", env) as proc:
            _PIDS[base + "/v1"] = proc.pid
            try:
                yield base + "/v1"
            finally:
                del _PIDS[base + "/v1"]


@contextmanager
def gptcache_server(backend_url: str, threshold: float, model: str) -> Iterator[str]:
    port = free_port()
    cmd = [PY, "-m", "bench.baselines", "serve-gptcache", "--port", str(port),
           "--backend", backend_url, "--threshold", str(threshold), "--model", model]  # fmt: skip
    with _process(cmd, f"http://127.0.0.1:{port}/healthz"):
        yield f"http://127.0.0.1:{port}/v1"
