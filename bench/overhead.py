"""Proxy overhead: added latency of cachegate versus calling the backend directly.

Starts a simulated backend (zero simulated latency, so only HTTP and proxy
work is measured) and cachegate in separate processes, drives both from this
process with aiohttp at several concurrencies, and prints p50/p99 latencies
and the difference. Cache misses use unique prompts; hits repeat one prompt.

    .venv/bin/python -m bench.overhead [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, run_load
from bench.procs import cachegate, machine, proxy_config, sim_backend


def chat(prompt: str, model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}


def row(label: str, c: int, direct: LoadResult, proxied: LoadResult) -> str:
    return (
        f"| {label} | {c} | {direct.p50_ms:.2f} | {direct.p99_ms:.2f} | {proxied.p50_ms:.2f} "
        f"| {proxied.p99_ms:.2f} | {proxied.p50_ms - direct.p50_ms:+.2f} "
        f"| {proxied.p99_ms - direct.p99_ms:+.2f} | {proxied.rps:.0f} | {proxied.errors} |"
    )


async def measure(requests: int, concurrencies: list[int]) -> list[str]:
    rows = []
    with (
        sim_backend("small", "--latency-scale", "0") as small,
        sim_backend("large", "--latency-scale", "0") as large,
        tempfile.TemporaryDirectory() as tmp,
        cachegate(proxy_config(small, large, Path(tmp) / "bench.db")) as proxy,
    ):
        for c in concurrencies:
            n = requests if c > 1 else max(200, requests // 4)
            direct = await run_load(
                small + "/chat/completions",
                lambda i, c=c: chat(f"direct {c} question {i}", "sim-small"),
                requests=n,
                concurrency=c,
            )
            miss = await run_load(
                proxy + "/chat/completions",
                lambda i, c=c: chat(f"miss {c} question {i}", "small"),
                requests=n,
                concurrency=c,
            )
            rows.append(row("miss (unique prompts)", c, direct, miss))
            hit = await run_load(
                proxy + "/chat/completions",
                lambda i, c=c: chat("What is the capital of France?", "small"),
                requests=n,
                concurrency=c,
            )
            rows.append(row("repeat (hit once cached)", c, direct, hit))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    rows = asyncio.run(measure(args.requests, args.concurrency))
    print(f"machine: {machine()}")
    print(
        "| path | concurrency | direct p50 ms | direct p99 ms | cachegate p50 ms "
        "| cachegate p99 ms | added p50 ms | added p99 ms | cachegate req/s | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
