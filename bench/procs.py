"""Small process helpers shared by the benchmarks (ports, readiness, machine line).

The benchmark processes themselves are started by ``bench.targets``.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


#: How many ports below the kernel's ephemeral range :func:`free_port` draws from.
_BELOW_EPHEMERAL = 10_000
_PICK = random.SystemRandom()  # not the global RNG, which tests (hypothesis) may seed
# Ports handed out lately: a caller often asks for several before binding any (a test
# stack's two backends and proxy), and a port drawn twice would be bound twice.
_HANDED: deque[int] = deque(maxlen=4096)
_HANDED_LOCK = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port free now, for a server to bind a moment later.

    Drawn below the kernel's ephemeral range: a port asked of the kernel (bind to 0)
    comes from that range, the same range outgoing connections take their source
    ports from, so between this check and the server's bind a connection could take
    it ("address already in use"; seen once in CI). Below the range only another
    listener can, and the bind check here rules out the ones already listening; a
    port handed out lately in this process is not handed out again.
    """
    low = _ephemeral_range()[0]
    with _HANDED_LOCK:
        for _ in range(50):
            port = _PICK.randrange(max(1024, low - _BELOW_EPHEMERAL), low)
            if port in _HANDED:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED.append(port)
            return port
    with socket.socket() as s:  # the range below is full: let the kernel choose
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


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
