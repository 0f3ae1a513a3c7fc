"""Proxy overhead matrix: added latency of a miss and of a semantic hit versus the backend
directly, at several concurrencies, and the request rate at which p99 doubles.

Simulated backends answer instantly by default (``--backend-latency-scale 0``), so what
is measured is cachegate's own work (HTTP, embedding, classification, lookup, equivalence
check, routing, write-behind) at its capacity: at concurrency 32 most of the added latency
is queueing for the 2 cores. With ``--backend-latency-scale 5`` a call takes about 0.9 s
and concurrency 32 is a load the machine carries; "added" is then what a client waits on
top of its backend. "CPU ms/req" is the cachegate process's CPU time per request, which
other load on the machine moves far less than latencies. cachegate and the backends are
separate processes; the load comes from this one (closed loop for the concurrency table,
open loop with Poisson arrivals for the rate sweep).

- miss: unique prompts (never cached before);
- exact hit: the stored sentences asked again (answered before anything is embedded);
- semantic hit: sentences from GPTCache's mock pairs stored first, then their paraphrases
  asked (only pairs cachegate's equivalence checker accepts offline), so the exact tier
  misses and the HNSW tier + equivalence check serve; the table shows how many were
  semantic hits (a paraphrase that missed is stored, and later counts as an exact hit);
- direct: the same bodies sent to the simulated backend.

    .venv/bin/python -m bench.overhead_matrix [--requests 1000] [--concurrency 1 32 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.embcache import embed_texts
from bench.procs import machine
from bench.targets import artifact_present, cachegate, cachegate_config, cpu_seconds, sim
from bench.workload import data_path
from cache import EquivalenceChecker


@dataclass(frozen=True)
class Run:
    latencies_ms: np.ndarray
    statuses: list[str]  # x-cachegate-cache per request
    semantic: int  # hits with similarity below 1 (not the exact tier)
    errors: int
    seconds: float

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds


def body(text: str, model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}


async def _send(session: aiohttp.ClientSession, url: str, payload: dict[str, Any],
                out: list[tuple[float, str, float, int]]) -> None:  # fmt: skip
    t = time.perf_counter()
    async with session.post(url, json=payload) as r:
        await r.read()
        sim_h = r.headers.get("x-cachegate-similarity")
        out.append((time.perf_counter() - t, r.headers.get("x-cachegate-cache", "none"),
                    float(sim_h) if sim_h else 1.0, r.status))  # fmt: skip


def _run(out: list[tuple[float, str, float, int]], seconds: float) -> Run:
    return Run(
        latencies_ms=np.array([o[0] for o in out]) * 1000,
        statuses=[o[1] for o in out],
        semantic=sum(1 for o in out if o[1] == "hit" and o[2] < 0.9999),
        errors=sum(1 for o in out if o[3] != 200),
        seconds=seconds,
    )


async def closed_loop(url: str, bodies: Callable[[int], dict[str, Any]], n: int, c: int) -> Run:
    out: list[tuple[float, str, float, int]] = []
    counter = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c * 2)) as s:

        async def worker() -> None:
            for i in counter:
                await _send(s, url, bodies(i), out)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        return _run(out, time.perf_counter() - t)


async def open_loop(url: str, bodies: Callable[[int], dict[str, Any]], rate: float,
                    seconds: float, seed: int) -> Run:  # fmt: skip
    out: list[tuple[float, str, float, int]] = []
    gaps = np.random.default_rng(seed).exponential(1 / rate, size=int(rate * seconds))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2048)) as s:
        t0 = time.perf_counter()
        tasks, at = [], 0.0
        for i, gap in enumerate(gaps):
            at += gap
            delay = at - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(s, url, bodies(i), out)))
        await asyncio.gather(*tasks)
        return _run(out, time.perf_counter() - t0)


def direct_body(c: int, i: int) -> dict[str, Any]:
    return body(f"d{c} q{i}", "sim-large")


def miss_body(run: str, i: int) -> dict[str, Any]:
    return body(f"Unique question {run}-{i}: what about item {i * 7919}?", "large")


def paraphrase_pairs(n: int) -> list[tuple[str, str]]:
    """Up to ``n`` (stored, paraphrase) pairs from GPTCache's mock data that cachegate's
    equivalence checker accepts, so asking the paraphrase exercises the semantic path
    (exact tier miss, HNSW search, check) and should hit."""
    with data_path("cache/gptcache_mock_pairs.json").open() as fh:
        pairs = [(str(p["origin"]), str(p["similar"])) for p in json.load(fh)]
    if not artifact_present("cache", "equivalence.npz"):
        return pairs[:n]
    checker = EquivalenceChecker.load_default()
    vecs = embed_texts([t for pair in pairs for t in pair])
    out = []
    for k, (a, b) in enumerate(pairs):
        va, vb = vecs[2 * k], vecs[2 * k + 1]
        if float(va @ vb) >= 0.80 and checker.check(b, vb, a, va).equivalent:
            out.append((a, b))
        if len(out) == n:
            break
    return out


async def measure(args: argparse.Namespace) -> None:
    equivalence = artifact_present("cache", "equivalence.npz")
    router = artifact_present("router", "default_router.npz")
    print(f"machine: {machine()}")
    print(f"equivalence check: {'on' if equivalence else 'off (artifact not committed)'}; "
          f"router: {'on' if router else 'off (artifact not committed)'}; model pinned: large; "
          f"backend latency scale: {args.backend_latency_scale}; "
          f"embedder arithmetic: {'int8' if args.quantize == 'int8' else 'float'}")  # fmt: skip
    with (
        sim("small", args.backend_latency_scale) as small,
        sim("large", args.backend_latency_scale) as large,
        tempfile.TemporaryDirectory() as tmp,
        cachegate(
            cachegate_config(
                small,
                large,
                Path(tmp) / "o.db",
                equivalence=equivalence,
                router=router,
                quantize=args.quantize,
            )
        ) as proxy,  # fmt: skip
    ):
        direct_url, proxy_url = large + "/chat/completions", proxy + "/chat/completions"
        pairs = paraphrase_pairs(args.hit_prompts)
        n_hit = len(pairs)
        warm = await closed_loop(proxy_url, lambda i: body(pairs[i][0], "large"), n_hit, 8)
        await asyncio.sleep(1.0)  # write-behind
        print(f"stored {n_hit} prompts whose paraphrases the checker accepts "
              f"({warm.errors} errors)\n")  # fmt: skip
        print(
            "| path | concurrency | direct p50 | direct p99 | cachegate p50 | cachegate p99 "
            "| added p50 | added p99 | cachegate req/s | cachegate CPU ms/req "
            "| hits (semantic) | errors |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in args.concurrency:
            n = args.requests if c > 1 else max(200, args.requests // 4)
            direct = await closed_loop(direct_url, partial(direct_body, c), n, c)
            paths: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
                ("miss", partial(miss_body, f"{c}")),
                ("exact hit", lambda i: body(pairs[i % n_hit][0], "large")),
                ("semantic hit", lambda i: body(pairs[i % n_hit][1], "large")),
            ]
            for label, bodies in paths:
                cpu = cpu_seconds(proxy)
                r = await closed_loop(proxy_url, bodies, n, c)
                cpu_ms = (cpu_seconds(proxy) - cpu) * 1000 / n
                hits = sum(s == "hit" for s in r.statuses)
                print(f"| {label} | {c} | {direct.pct(50):.1f} | {direct.pct(99):.1f} "
                      f"| {r.pct(50):.1f} | {r.pct(99):.1f} | {r.pct(50) - direct.pct(50):+.1f} "
                      f"| {r.pct(99) - direct.pct(99):+.1f} | {r.rps:.0f} | {cpu_ms:.2f} "
                      f"| {hits} ({r.semantic}) | {r.errors} |")  # fmt: skip
        print("\nOpen-loop rate sweep on the miss path (Poisson arrivals, "
              f"{args.sweep_seconds:.0f} s per rate)\n")  # fmt: skip
        print("| offered req/s | achieved req/s | p50 ms | p99 ms | p99 / p99 at lowest rate |")
        print("|---|---|---|---|---|")
        base: float | None = None
        doubled: float | None = None
        for k, rate in enumerate(args.rates):
            r = await open_loop(
                proxy_url, partial(miss_body, f"sweep {k}"), rate, args.sweep_seconds, k
            )
            p99 = r.pct(99)
            base = base or p99
            print(f"| {rate:.0f} | {r.rps:.0f} | {r.pct(50):.1f} | {p99:.1f} | {p99 / base:.2f} |")
            if doubled is None and p99 >= 2 * base:
                doubled = rate
        print(f"\np99 doubles at: {f'{doubled:.0f} req/s' if doubled else 'not within the sweep'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--hit-prompts", type=int, default=300)
    p.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40, 80, 120, 160])
    p.add_argument("--sweep-seconds", type=float, default=10.0)
    p.add_argument(
        "--quantize",
        choices=["none", "int8"],
        default="none",
        help="cachegate's embedder.quantize (int8 needs the int8 extra: onnx)",
    )
    p.add_argument(
        "--backend-latency-scale",
        type=float,
        default=0.0,
        help="the simulated backends' latency model (ttft + per-token) times this; 0 (the "
        "default) answers instantly, so the concurrency table measures cachegate at its "
        "capacity; 5 makes a large-model call about 0.9 s, so concurrency 32 is a realistic "
        "load and 'added' is what a client waits on top of its backend",
    )
    asyncio.run(measure(p.parse_args()))


if __name__ == "__main__":
    main()
