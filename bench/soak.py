"""Soak: the Azure conversation trace replayed at 10x through cachegate for a long time.

cachegate runs as its own process (``cachegate serve``) in front of two simulated
backends (``bench.simserver``, latency following each request's output tokens);
this process sends the trace's requests open loop at their arrival times (the
texts come from ``bench.workload``: known intents, paraphrases, Zipf popularity)
and samples the proxy's RSS every ``--sample-s`` seconds. The trace covers about
58 minutes, so at 10x it lasts about 5.8 minutes; longer runs replay it again
(same texts, so later laps hit the cache more).

Reports: requests, errors by status, hit rate, p50/p99 latency per minute, RSS
over time and its slope after warm-up (least squares over samples after
``--warmup-min``), and the final /metrics figures that matter for leaks.

    .venv/bin/python -m bench.soak --minutes 10 [--speedup 10] [--json soak.json]
    .venv/bin/python -m bench.soak --minutes 60          # the full hour
    .venv/bin/python -m bench.soak --minutes 8 --tracemalloc   # what grows, by source line

``--tracemalloc`` runs the proxy under :mod:`tracemalloc` (slower: use a lower
``--speedup``), snapshots it when the warm-up ends and when the run ends (SIGUSR1),
and prints the source lines whose live Python allocations grew most in between;
RSS growing while they do not points at native memory (ONNX Runtime, hnswlib, malloc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import yaml

from bench.procs import ROOT, machine, wait_http
from bench.targets import artifact_present, cachegate_config, sim
from bench.workload import Request, build_workload

PY = sys.executable
# Starts cachegate's CLI under tracemalloc; SIGUSR1 dumps a snapshot to $SOAK_TRACE_DIR.
TRACED = """
import os, runpy, signal, sys, tracemalloc
tracemalloc.start(int(os.environ.get("SOAK_TRACE_FRAMES", "1")))
taken = []
def dump(signum, frame):
    taken.append(1)
    tracemalloc.take_snapshot().dump(os.path.join(os.environ["SOAK_TRACE_DIR"], f"snap{len(taken)}"))
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["proxy.cli", *sys.argv[1:]]
runpy.run_module("proxy.cli", run_name="__main__")
"""


@dataclass(frozen=True)
class Sample:
    sent_at: float  # seconds since the start of the run
    latency_s: float
    status: int
    cache: str


@contextmanager
def proxy_process(
    cfg: dict[str, Any], grace_s: float = 30, trace_dir: Path | None = None
) -> Iterator[tuple[str, int]]:
    """``cachegate serve`` on ``cfg`` (under tracemalloc when ``trace_dir`` is given);
    yields (base URL, pid). Stopped with SIGTERM."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "CACHEGATE_CONFIG": str(path)}
        cli = [PY, "-m", "proxy.cli"]
        subprocess.run([*cli, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
        if trace_dir is not None:
            env["SOAK_TRACE_DIR"] = str(trace_dir)
            cli = [PY, "-c", TRACED]
        serve = [*cli, "--log-level", "warning", "serve", "--grace-s", str(grace_s)]
        proc = subprocess.Popen(serve, cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{cfg['server']['port']}"
        try:
            wait_http(base + "/readyz", timeout=120)
            yield base, proc.pid
        finally:
            proc.terminate()
            code = proc.wait(60)
            print(f"cachegate exited with {code} after SIGTERM", file=sys.stderr)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def schedule(
    requests: Sequence[Request], lap_s: float, minutes: float
) -> list[tuple[float, Request]]:
    """The workload's arrivals, repeated lap after lap until ``minutes`` are covered."""
    out: list[tuple[float, Request]] = []
    lap = 0
    while True:
        for r in requests:
            at = lap * lap_s + r.at_s
            if at >= minutes * 60:
                return out
            out.append((at, r))
        lap += 1


async def drive(
    base: str,
    pid: int,
    plan: list[tuple[float, Request]],
    sample_s: float,
    snapshot_at: float | None = None,
) -> tuple[list[Sample], list[tuple[float, float]]]:
    """Sends ``plan`` open loop, sampling RSS; at ``snapshot_at`` s signals the proxy
    to dump a tracemalloc snapshot."""
    samples: list[Sample] = []
    rss: list[tuple[float, float]] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=2048), timeout=timeout
    ) as session:
        t0 = time.perf_counter()

        async def one(at: float, req: Request) -> None:
            body = {"model": "auto", "messages": [{"role": "user", "content": req.text}],
                    "max_tokens": req.max_tokens}  # fmt: skip
            started = time.perf_counter()
            try:
                async with session.post(base + "/v1/chat/completions", json=body) as resp:
                    await resp.read()
                    cache = resp.headers.get("x-cachegate-cache", "none")
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status, cache = 0, "none"
            samples.append(Sample(at, time.perf_counter() - started, status, cache))

        async def sampler() -> None:
            pending = snapshot_at
            while True:
                now = time.perf_counter() - t0
                rss.append((now, rss_mb(pid)))
                if pending is not None and now >= pending:
                    os.kill(pid, signal.SIGUSR1)
                    pending = None
                await asyncio.sleep(sample_s)

        tick = asyncio.create_task(sampler())
        tasks = []
        last_print = 0.0
        for at, req in plan:
            delay = at - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at, req)))
            if at - last_print >= 60:
                last_print = at
                done = len(samples)
                errors = sum(s.status != 200 for s in samples)
                print(f"  {at / 60:5.1f} min: {done} done, {errors} errors, "
                      f"RSS {rss[-1][1]:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip
        await asyncio.gather(*tasks)
        rss.append((time.perf_counter() - t0, rss_mb(pid)))
        tick.cancel()
    return samples, rss


def slope_mb_per_hour(rss: list[tuple[float, float]], warmup_s: float) -> float | None:
    pts = [(t, m) for t, m in rss if t >= warmup_s]
    if len(pts) < 3:
        return None
    t = np.array([p[0] for p in pts])
    m = np.array([p[1] for p in pts])
    return float(np.polyfit(t, m, 1)[0] * 3600)


def tracemalloc_growth(trace_dir: Path, pid: int, top: int = 15) -> list[str]:
    """Signals the final snapshot and lists the lines that grew most since the first."""
    import tracemalloc

    os.kill(pid, signal.SIGUSR1)
    first, last = trace_dir / "snap1", trace_dir / "snap2"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # the dump may still be being written
    if not first.exists() or not last.exists():
        return ["tracemalloc snapshots missing"]
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old = tracemalloc.Snapshot.load(str(first)).filter_traces(keep)
    new = tracemalloc.Snapshot.load(str(last)).filter_traces(keep)
    stats = new.compare_to(old, "lineno")
    total = sum(st.size_diff for st in stats) / 2**20
    lines = [f"traced Python memory grew {total:+.1f} MB between the snapshots"]
    lines += [str(st) for st in stats[:top]]
    return lines


def per_minute(samples: list[Sample]) -> list[dict[str, Any]]:
    by: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by[int(s.sent_at // 60)].append(s)
    rows = []
    for minute in sorted(by):
        lat = np.array([s.latency_s for s in by[minute] if s.status == 200])
        rows.append(
            {
                "minute": minute,
                "requests": len(by[minute]),
                "errors": sum(s.status != 200 for s in by[minute]),
                "hit_rate": sum(s.cache == "hit" for s in by[minute]) / len(by[minute]),
                "p50_ms": float(np.percentile(lat, 50) * 1000) if lat.size else None,
                "p99_ms": float(np.percentile(lat, 99) * 1000) if lat.size else None,
            }
        )
    return rows


def scrape(base: str) -> dict[str, float]:
    wanted = ("cachegate_cache_entries", "cachegate_cache_write_drops_total",
              "cachegate_limit_rejections_total", "cachegate_request_log_drops_total",
              "process_open_fds")  # fmt: skip
    out: dict[str, float] = defaultdict(float)
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith(wanted):
            name = line.split("{")[0].split(" ")[0]
            out[name] += float(line.rsplit(" ", 1)[1])
    return dict(out)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--speedup", type=float, default=10.0)
    p.add_argument("--warmup-min", type=float, default=2.0)
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-entries",
        type=int,
        help="per-category cache quota, so the cache reaches a steady size (a leak check)",
    )
    p.add_argument(
        "--no-ops",
        action="store_true",
        help="leave usage limits and the request log off (on by default, to exercise them)",
    )
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="run the proxy under tracemalloc and print what grew after the warm-up",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    trace_min = 58.0 / args.speedup  # the whole trace, compressed
    workload = build_workload(
        speedup=args.speedup, minutes=min(args.minutes, trace_min), seed=args.seed
    )
    lap_s = trace_min * 60
    plan = schedule(workload.requests, lap_s, args.minutes)
    print(f"soak: {len(plan)} requests over {args.minutes} min "
          f"({len(workload.requests)} per lap of {lap_s / 60:.1f} min)", file=sys.stderr)  # fmt: skip
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        trace_dir = Path(tmp) / "tracemalloc" if args.tracemalloc else None
        if trace_dir is not None:
            trace_dir.mkdir()
        small = stack.enter_context(sim("small"))
        large = stack.enter_context(sim("large"))
        cfg = cachegate_config(
            small,
            large,
            Path(tmp) / "soak.db",
            router=artifact_present("router", "default_router.npz"),
            default_policy=None if args.max_entries is None else {"max_entries": args.max_entries},
        )
        if not args.no_ops:
            # Generous limits and the request log with prompts: exercised, never binding.
            cfg["limits"] = {"requests_per_minute": 1_000_000, "tokens_per_minute": 10**9,
                             "budget_dollars": 1_000_000.0}  # fmt: skip
            cfg["privacy"] = {"request_log": True, "store_prompts": True}
        base, pid = stack.enter_context(proxy_process(cfg, trace_dir=trace_dir))
        started = time.time()
        snapshot_at = args.warmup_min * 60 if trace_dir is not None else None
        samples, rss = asyncio.run(drive(base, pid, plan, args.sample_s, snapshot_at))
        metrics = scrape(base)
        growth = tracemalloc_growth(trace_dir, pid) if trace_dir is not None else []
    statuses = Counter(s.status for s in samples)
    lat = np.array([s.latency_s for s in samples if s.status == 200])
    report = {
        "machine": machine(),
        "started": started,
        "minutes": args.minutes,
        "speedup": args.speedup,
        "requests": len(samples),
        "errors": sum(n for code, n in statuses.items() if code != 200),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "hit_rate": sum(s.cache == "hit" for s in samples) / max(1, len(samples)),
        "p50_ms": float(np.percentile(lat, 50) * 1000) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99) * 1000) if lat.size else None,
        "rss_mb_start": rss[0][1],
        "rss_mb_after_warmup": next((m for t, m in rss if t >= args.warmup_min * 60), None),
        "rss_mb_end": rss[-1][1],
        "rss_slope_mb_per_hour_after_warmup": slope_mb_per_hour(rss, args.warmup_min * 60),
        "max_entries": args.max_entries,
        "ops_exercised": not args.no_ops,
        "per_minute": per_minute(samples),
        "rss": rss,
        "metrics_end": metrics,
        "tracemalloc_growth": growth,
    }
    summary = {
        k: v for k, v in report.items() if k not in ("per_minute", "rss", "tracemalloc_growth")
    }
    print(json.dumps(summary, indent=2))
    for row in report["per_minute"]:
        print(f"min {row['minute']:3d}: {row['requests']:5d} req, {row['errors']} err, "
              f"hit {row['hit_rate']:.2f}, p50 {row['p50_ms'] or 0:7.1f} ms, "
              f"p99 {row['p99_ms'] or 0:7.1f} ms")  # fmt: skip
    for line in growth:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
