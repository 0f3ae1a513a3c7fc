"""A real Prometheus for tests: own process, temp TSDB, loopback port, 1 s scrapes.

Uses the ``prometheus``/``promtool`` binaries from Debian's ``prometheus``
package (``make system-deps`` installs it). Missing binaries fail the test with
a clear message; they never skip silently. The systemd service is not used.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.stack import free_port


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None and (Path("/usr/bin") / name).exists():
        path = str(Path("/usr/bin") / name)
    if path is None:
        pytest.fail(
            f"`{name}` not found on PATH or in /usr/bin: the deploy tests need a real "
            "Prometheus; install it with `make system-deps` (apt-get install prometheus)",
            pytrace=False,
        )
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


class Prometheus:
    """Scrapes ``target`` (host:port) every second and evaluates ``rule_files`` every second."""

    def __init__(self, root: Path, target: str, rule_files: tuple[Path, ...]) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in rule_files],
                    # Same job name as deploy/prometheus/prometheus.yml: alerts match on it.
                    "scrape_configs": [
                        {"job_name": "cachegate", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        self.log = root / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> Prometheus:
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.root / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            try:
                if self._http.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready in 20 s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self._http.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; the decoded body, whether it succeeded or not."""
        r = self._http.get(f"/api/v1/{path}", params=params)
        body: dict[str, Any] = r.json()
        return body

    def query(self, promql: str) -> dict[str, Any]:
        return self.api("query", query=promql)

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, None when it has no data."""
        body = self.query(promql)
        if body.get("status") != "success":
            raise AssertionError(f"{promql}: {body.get('error')}")
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def series_names(self) -> set[str]:
        body = self.api("label/__name__/values")
        return set(body["data"])
