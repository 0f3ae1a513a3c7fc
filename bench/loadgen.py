"""A small closed-loop HTTP load generator (aiohttp) with latency percentiles."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def run_load(
    url: str,
    body_for: Callable[[int], dict[str, Any]],
    *,
    requests: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                started = time.perf_counter()
                async with session.post(
                    url, data=json.dumps(body_for(i)),
                    headers={"content-type": "application/json", **(headers or {})},
                ) as resp:  # fmt: skip
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    arr = np.array(latencies) * 1000
    return LoadResult(
        requests=requests,
        errors=errors,
        seconds=elapsed,
        p50_ms=float(np.percentile(arr, 50)),
        p95_ms=float(np.percentile(arr, 95)),
        p99_ms=float(np.percentile(arr, 99)),
    )
