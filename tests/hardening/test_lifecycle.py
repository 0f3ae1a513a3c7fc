"""Graceful shutdown of a real ``cachegate serve`` process.

SIGTERM: readiness goes false at once, an in-flight (slow) stream still completes
with [DONE], the write-behind queue is flushed, the process exits 0, and a restart
on the same SQLite file answers the same question from the cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Explain how a lighthouse lens focuses light."


def _config(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": free_port()},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'life.db'}"},
        "auth": {"require_keys": False},
        "router": {"enabled": False},
        "cache": {"equivalence_check": False},
        "backends": [
            {"name": "small", "tier": "small", "model": "sim-small", "simulate": "small",
             "base_url": f"http://127.0.0.1:{free_port()}/v1"},
            {"name": "large", "tier": "large", "model": "sim-large", "simulate": "large",
             "base_url": f"http://127.0.0.1:{free_port()}/v1"},
        ],
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def _serve(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CACHEGATE_CONFIG": str(config)}
    cmd = [sys.executable, "-m", "proxy.cli", "--log-level", "warning", "serve", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "cachegate exited during start-up"
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("cachegate did not become ready")


def test_sigterm_finishes_streams_flushes_and_exits_zero(tmp_path: Path) -> None:
    config, cfg = _config(tmp_path)
    url = f"http://127.0.0.1:{cfg['server']['port']}"
    sim = cfg["backends"][0]["base_url"].removesuffix("/v1")
    proc = _serve(config, "--grace-s", "20", "--drain-s", "1")
    try:
        _wait_ready(url, proc)
        # 24 tokens at 0.1 s each: a stream of about 2.5 s.
        httpx.post(
            sim + "/sim/config", json={"trickle_s": 0.1, "latency_scale": 0}
        ).raise_for_status()
        events: list[str] = []
        first = threading.Event()

        def stream() -> None:
            body = {"model": "auto", "stream": True,
                    "messages": [{"role": "user", "content": QUESTION}]}  # fmt: skip
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(20)
        proc.send_signal(signal.SIGTERM)
        assert httpx.get(url + "/readyz", timeout=2).status_code == 503  # within --drain-s
        reader.join(30)
        assert events[-1] == "[DONE]"
        assert not any('"error"' in e for e in events)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    again = _serve(config)
    try:
        _wait_ready(url, again)
        body = {"model": "auto", "messages": [{"role": "user", "content": QUESTION}]}
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        assert r.headers["x-cachegate-cache"] == "hit"
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
