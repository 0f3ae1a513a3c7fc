"""Load-adaptive policies under a large-model overload, adaptation on and off, side by side.

A paraphrase workload with a category mix (``bench.workload``: labelled intents, so
every hit is judged right or wrong) is sent to cachegate pinned to the large model,
whose simulated server has bounded concurrency and queues the rest. Arrivals come in
three phases: warm-up, an overload burst above the large backend's capacity, and
recovery. The same requests at the same times go through cachegate twice: with
load adaptation on, and off. Printed per phase: calls reaching the large backend,
hit rate, false-hit rate, p50/p99 latency; and how long after the burst the
effective thresholds were back at their configured values.

    .venv/bin/python -m bench.adaptive [--warm-s 40 --burst-s 60 --recover-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.procs import machine
from bench.replay import replay
from bench.report import Outcome
from bench.targets import cachegate, cachegate_config, sim
from bench.workload import Workload, build_workload

THRESHOLD = re.compile(r'^cachegate_policy_effective_threshold\{category="([^"]+)"\} (\S+)$', re.M)


def phased(workload: Workload, warm_s: float, burst_s: float, recover_s: float,
           low_rps: float, high_rps: float, seed: int) -> Workload:  # fmt: skip
    """The workload's requests, in order, re-timed to Poisson arrivals per phase."""
    rng = np.random.default_rng(seed)
    times: list[float] = []
    t = 0.0
    for end, rate in ((warm_s, low_rps), (warm_s + burst_s, high_rps),
                      (warm_s + burst_s + recover_s, low_rps)):  # fmt: skip
        while True:
            t += float(rng.exponential(1.0 / rate))
            if t >= end:
                t = end
                break
            times.append(t)
    reqs = [replace(r, at_s=at) for r, at in zip(workload.requests, times, strict=False)]
    return replace(workload, requests=tuple(reqs))


def thresholds(base: str) -> dict[str, float]:
    text = httpx.get(base.removesuffix("/v1") + "/metrics", timeout=5).text
    return {m.group(1): float(m.group(2)) for m in THRESHOLD.finditer(text)}


async def run(
    base: str, workload: Workload, burst_end: float
) -> tuple[list[Outcome], float | None]:
    """Replays; meanwhile samples effective thresholds to time their return after the burst."""
    configured = thresholds(base)
    started = time.monotonic()
    back_at: list[float | None] = [None]

    async def watch() -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic() - started
            current = await asyncio.to_thread(thresholds, base)
            relaxed = any(abs(current.get(c, v) - v) > 1e-9 for c, v in configured.items())
            if now > burst_end and not relaxed and back_at[0] is None:
                back_at[0] = now - burst_end
            if relaxed:
                back_at[0] = None

    watcher = asyncio.create_task(watch())
    try:
        outcomes = await replay(base, workload, label="adaptive", max_error_rate=0.2,
                                timeout_s=120)  # fmt: skip
    finally:
        watcher.cancel()
    return outcomes, back_at[0]


def summarise(outcomes: list[Outcome], lo: float, hi: float) -> dict[str, Any]:
    sel = [o for o in outcomes if lo <= o.request.at_s < hi]
    hits = [o for o in sel if o.cache == "hit"]
    wrong = sum(o.correct is False for o in hits)
    ok = [o.latency_s * 1000 for o in sel if o.status == 200]
    lat = np.array(ok if ok else [0.0])
    return {
        "requests": len(sel),
        "large_calls": sum(o.backend_call for o in sel),
        "errors": sum(o.status != 200 for o in sel),
        "hit_rate": len(hits) / max(1, len(sel)),
        "false_hit_rate": wrong / max(1, len(sel)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm-s", type=float, default=40)
    parser.add_argument("--burst-s", type=float, default=60)
    parser.add_argument("--recover-s", type=float, default=60)
    parser.add_argument("--low-rps", type=float, default=3)
    parser.add_argument("--high-rps", type=float, default=14)
    parser.add_argument("--large-concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    total = args.warm_s + args.burst_s + args.recover_s
    base_load = build_workload(part="test", speedup=60, minutes=4, seed=args.seed)
    workload = phased(base_load, args.warm_s, args.burst_s, args.recover_s,
                      args.low_rps, args.high_rps, args.seed)  # fmt: skip
    burst = (args.warm_s, args.warm_s + args.burst_s)
    results: dict[str, tuple[list[Outcome], float | None]] = {}
    with (
        sim("small", latency_scale=1.0) as small,
        sim("large", latency_scale=1.0, max_concurrency=args.large_concurrency) as large,
    ):
        for variant in ("off", "on"):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = cachegate_config(small, large, Path(tmp) / "a.db")
                cfg["backends"][1]["max_concurrency"] = args.large_concurrency
                cfg["backends"][1]["ttft_slo_s"] = 1.0
                cfg["adaptive"] = {"enabled": variant == "on", "interval_s": 1.0}
                with cachegate(cfg) as base:
                    results[variant] = asyncio.run(run(base, workload, burst[1]))
    print(f"machine: {machine()}")
    print(f"{len(workload.requests)} requests over {total:.0f} s; burst {args.high_rps} req/s "
          f"for {args.burst_s:.0f} s against a large backend of {args.large_concurrency} "
          f"concurrent requests; all pinned to the large model")  # fmt: skip
    print(
        "| phase | adaptation | requests | large calls | hit rate | false-hit rate | p50 ms | p99 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    phases = {"warm-up": (0, burst[0]), "overload": burst, "recovery": (burst[1], total + 1)}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for name, (lo, hi) in phases.items():
        for variant in ("off", "on"):
            s = summarise(results[variant][0], lo, hi)
            rows[(name, variant)] = s
            print(f"| {name} | {variant} | {s['requests']} | {s['large_calls']} | {s['hit_rate']:.1%} "
                  f"| {s['false_hit_rate']:.2%} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | {s['errors']} |")  # fmt: skip
    off, on = rows[("overload", "off")], rows[("overload", "on")]
    cut = 1 - on["large_calls"] / max(1, off["large_calls"])
    rise = (on["false_hit_rate"] - off["false_hit_rate"]) * 100
    back = results["on"][1]
    print(
        f"overload: {cut:.1%} fewer calls to the large backend with adaptation; "
        f"false-hit rate {rise:+.2f} points"
    )
    print(
        "policies back at configured values "
        + (f"{back:.0f} s after the burst" if back is not None else "— not within the run")
    )


if __name__ == "__main__":
    main()
