"""Load-adaptive policies under a large-model overload, adaptation on and off, side by side.

**Workload.** Texts with known intents and a category mix (``bench.workload``), so every
hit is judged right or wrong. Arrivals come from the Azure LLM inference trace
(conversation): its hour is mapped onto the replay's wall span and thinned to
``--base-rps``, except in a surge window where ``--surge`` times as many of its requests
are kept (the trace's own burstiness stays). Everything is pinned to the large model,
whose simulated server serves ``--large-concurrency`` requests at a time and queues the
rest, so the surge exceeds its capacity for a while.

**Time scaling.** TTLs only matter over a span comparable to them, and the built-in
ones are a day (conversation, general) to weeks. The replay therefore stands for a
longer stretch of service than it lasts: one wall second stands for ``86400 / day_s``
seconds, and every category's TTL from ``proxy.wiring.DEFAULT_POLICIES`` is divided by
the same factor (``--day-s 30``: a one-day TTL lasts 30 s, the 300 s time-sensitive TTL
0.1 s). The control loop (load levels, dwell, steps) is not scaled: it reacts to the
backend's real queue, in wall time.

**Variants.** The same requests at the same times go through cachegate twice, each with
a fresh cache: adaptation off, and on; single-flight for misses (``cache.coalesce``) is
on in both unless ``--coalesce off`` (run both ways to see what each buys). Printed per phase (warm-up, overload, recovery):
calls reaching the large backend, hit rate, false-hit rate (wrong hits / requests),
latency p50/p99, and the wait of backend calls (their latency minus the simulated
service time: queueing at the backend plus proxy overhead); then, for the overload,
where the difference comes from, how many of its misses no policy could avoid (first
time an intent is asked), and how long after the surge the effective policies (cosine
thresholds and TTL stretches, read from ``/metrics``) were back at their configured values.

    .venv/bin/python -m bench.adaptive run [--day-s 30 --wall-s 140 --surge-at 50 --surge-s 45]
                                           [--coalesce on|off]
    .venv/bin/python -m bench.adaptive band [--requests 2000 --seeds 1 2 3]

``band`` fits nothing by itself: it prints, per category, how many misses of a dev-part
replay (offline: same embedder, checker and policies, no backends) a relaxed cosine floor
or equivalence threshold would turn into hits and how many of those would be right, the
table ``equivalence_floor`` and ``threshold_floor`` in ``DEFAULT_POLICIES`` were read from.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from backends.sim import PROFILES
from bench.procs import machine
from bench.replay import replay
from bench.report import Outcome
from bench.targets import cachegate, cachegate_config, sim
from bench.workload import Request, Workload, build_workload, load_trace
from proxy.wiring import DAY, DEFAULT_POLICIES

GAUGE = re.compile(
    r'^cachegate_(policy_effective_threshold|policy_ttl_stretch)\{category="([^"]+)"\} (\S+)$',
    re.M,
)
ANSWER_TOKENS = 64  # the simulated backends' longest answer (bench.simserver)


# -- workload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    wall_s: float
    surge_at: float
    surge_s: float
    day_s: float  # wall seconds standing for one day of service

    @property
    def surge_end(self) -> float:
        return self.surge_at + self.surge_s

    def phases(self) -> dict[str, tuple[float, float]]:
        return {
            "warm-up": (0.0, self.surge_at),
            "overload": (self.surge_at, self.surge_end),
            "recovery": (self.surge_end, self.wall_s + 1),
        }

    def ttl(self, category: str) -> float:
        """The category's built-in TTL, scaled to the replay's wall time."""
        policy = DEFAULT_POLICIES.get(category, DEFAULT_POLICIES["general"])
        return float(policy["ttl_seconds"]) * self.day_s / DAY


def trace_arrivals(
    timeline: Timeline, base_rps: float, surge: float, seed: int, trace: str = "azure-conv"
) -> list[float]:
    """Arrival times (wall s): the trace's span mapped onto ``wall_s``, each of its requests
    kept with a probability giving ``base_rps`` on average, ``surge`` × that in the surge."""
    points = load_trace(trace)
    span = points[-1].at_s or 1.0
    keep = base_rps * timeline.wall_s / len(points)
    if keep * surge > 1:
        raise ValueError(f"the trace is too sparse for {base_rps * surge:.1f} req/s")
    rng = np.random.default_rng(seed)
    times = []
    for p in points:
        t = p.at_s / span * timeline.wall_s
        inside = timeline.surge_at <= t < timeline.surge_end
        if rng.random() < keep * (surge if inside else 1.0):
            times.append(t)
    return times


def build(timeline: Timeline, base_rps: float, surge: float, seed: int, part: str) -> Workload:
    times = trace_arrivals(timeline, base_rps, surge, seed)
    # The whole trace hour, as many requests as arrivals (their texts, intents, tokens).
    base = build_workload(part=part, speedup=60, minutes=1, max_requests=len(times), seed=seed)
    reqs = tuple(replace(r, at_s=t) for r, t in zip(base.requests, times, strict=True))
    return replace(base, requests=reqs)


def scaled_policies(timeline: Timeline) -> dict[str, dict[str, Any]]:
    """Config overrides: every built-in category with its TTL scaled to wall time."""
    return {name: {"ttl_seconds": timeline.ttl(name)} for name in DEFAULT_POLICIES}


# -- oracle headroom --------------------------------------------------------------------------


@dataclass(frozen=True)
class Headroom:
    """Of the overload's requests, what no policy could save, and what a stretch could."""

    requests: int
    first_asks: int  # intent never asked before: a miss whatever the policy
    expired: int  # intent answered before, but its latest answer older than the TTL
    stretchable: int  # ...and younger than ttl_max_factor × TTL in a category that may stretch


def headroom(workload: Workload, timeline: Timeline) -> Headroom:
    """Counted on intents (a perfect matcher), answers stored when asked and not served."""
    stored: dict[str, float] = {}
    first = expired = stretchable = n = 0
    for r in workload.requests:
        inside = timeline.surge_at <= r.at_s < timeline.surge_end
        last = stored.get(r.intent)
        ttl = timeline.ttl(r.category)
        factor = float(DEFAULT_POLICIES.get(r.category, {}).get("ttl_max_factor", 1.0))
        if last is not None and r.at_s - last < ttl:
            n += inside
            continue
        if inside:
            n += 1
            first += last is None
            if last is not None:
                expired += 1
                stretchable += r.at_s - last < factor * ttl
        stored[r.intent] = r.at_s
    return Headroom(n, first, expired, stretchable)


# -- end to end -----------------------------------------------------------------------------


@dataclass
class Watch:
    """Effective policies sampled from /metrics once a second."""

    relaxed_at: list[float] = field(default_factory=list)  # wall times a policy was off
    samples: int = 0


def gauges(base: str) -> dict[tuple[str, str], float]:
    text = httpx.get(base.removesuffix("/v1") + "/metrics", timeout=5).text
    return {(m.group(1), m.group(2)): float(m.group(3)) for m in GAUGE.finditer(text)}


def configured(gauge: str, category: str) -> float:
    """A gauge's value with no adaptation: the built-in threshold, no TTL stretch."""
    if gauge == "policy_ttl_stretch":
        return 1.0
    policy = DEFAULT_POLICIES.get(category, DEFAULT_POLICIES["general"])
    return float(policy.get("similarity_threshold", 0.90))


async def run_variant(base: str, workload: Workload) -> tuple[list[Outcome], Watch]:
    watch = Watch()
    started = time.monotonic()

    async def sample() -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic() - started
            current = await asyncio.to_thread(gauges, base)
            watch.samples += 1
            if any(abs(v - configured(*k)) > 1e-9 for k, v in current.items()):
                watch.relaxed_at.append(now)

    sampler = asyncio.create_task(sample())
    try:
        outcomes = await replay(base, workload, label="adaptive", max_error_rate=0.2,
                                timeout_s=120)  # fmt: skip
    finally:
        sampler.cancel()
    return outcomes, watch


def service_s(req: Request) -> float:
    """The simulated large backend's own time for a request (no queueing)."""
    p = PROFILES["large"]
    return p.ttft_s + p.per_token_s * min(req.max_tokens, ANSWER_TOKENS)


@dataclass(frozen=True)
class PhaseSummary:
    requests: int
    large_calls: int
    errors: int
    hit_rate: float
    false_hit_rate: float  # wrong hits / requests
    p50_ms: float
    p99_ms: float
    wait_p50_ms: float  # backend calls: latency minus service time
    wait_p99_ms: float


def summarise(outcomes: Sequence[Outcome], lo: float, hi: float) -> PhaseSummary:
    sel = [o for o in outcomes if lo <= o.request.at_s < hi]
    hits = [o for o in sel if o.cache == "hit"]
    wrong = sum(o.correct is False for o in hits)
    ok = [o.latency_s * 1000 for o in sel if o.status == 200]
    waits = [(o.latency_s - service_s(o.request)) * 1000 for o in sel if o.backend_call]
    lat, wait = np.array(ok or [0.0]), np.array(waits or [0.0])
    return PhaseSummary(
        requests=len(sel),
        large_calls=sum(o.backend_call for o in sel),
        errors=sum(o.status != 200 for o in sel),
        hit_rate=len(hits) / max(1, len(sel)),
        false_hit_rate=wrong / max(1, len(sel)),
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
        wait_p50_ms=float(np.percentile(wait, 50)),
        wait_p99_ms=float(np.percentile(wait, 99)),
    )


def by_category(outcomes: Sequence[Outcome], lo: float, hi: float) -> dict[str, tuple[int, int]]:
    """Per labelled category: (large calls, wrong hits) in [lo, hi)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        if lo <= o.request.at_s < hi:
            out[o.request.category][0] += o.backend_call
            out[o.request.category][1] += o.cache == "hit" and o.correct is False
    return {c: (v[0], v[1]) for c, v in sorted(out.items())}


def in_flight_repeats(outcomes: Sequence[Outcome], lo: float, hi: float) -> tuple[int, int]:
    """Backend calls in [lo, hi) made while a call for the same intent was still waiting
    for its answer: no cache policy can serve them (nothing is stored yet). Returns
    (all such calls, those with the very text of a waiting call)."""
    open_until: dict[str, float] = {}
    texts: dict[str, dict[str, float]] = defaultdict(dict)
    count = same_text = 0
    for o in sorted(outcomes, key=lambda o: o.request.at_s):
        if not o.backend_call:
            continue
        r = o.request
        if lo <= r.at_s < hi and open_until.get(r.intent, -1.0) > r.at_s:
            count += 1
            same_text += texts[r.intent].get(r.text, -1.0) > r.at_s
        end = r.at_s + o.latency_s
        open_until[r.intent] = max(end, open_until.get(r.intent, -1.0))
        texts[r.intent][r.text] = max(end, texts[r.intent].get(r.text, -1.0))
    return count, same_text


def stale_hits(outcomes: Sequence[Outcome], timeline: Timeline, lo: float, hi: float) -> int:
    """Right hits in [lo, hi) with no answer to their intent stored within the category's
    TTL before them: served past the configured TTL (an estimate from the outside)."""
    done: dict[str, list[float]] = defaultdict(list)  # intent -> answer arrival times
    for o in outcomes:
        if o.backend_call:
            done[o.request.intent].append(o.request.at_s + o.latency_s)
    count = 0
    for o in outcomes:
        r = o.request
        if o.cache == "hit" and o.correct and lo <= r.at_s < hi:
            fresh = [t for t in done[r.intent] if r.at_s - timeline.ttl(r.category) <= t <= r.at_s]
            count += not fresh
    return count


def back_after(watch: Watch, timeline: Timeline) -> float | None:
    """Seconds from the end of the surge to the last sample with a relaxed policy."""
    if not watch.relaxed_at:
        return None
    return max(0.0, watch.relaxed_at[-1] + 1.0 - timeline.surge_end)


def run(args: argparse.Namespace) -> None:
    timeline = Timeline(args.wall_s, args.surge_at, args.surge_s, args.day_s)
    workload = build(timeline, args.base_rps, args.surge, args.seed, "test")
    room = headroom(workload, timeline)
    results: dict[str, tuple[list[Outcome], Watch]] = {}
    with (
        sim("small") as small,
        sim("large", max_concurrency=args.large_concurrency) as large,
    ):
        for variant in ("off", "on"):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = cachegate_config(small, large, Path(tmp) / "a.db")
                cfg["backends"][1]["max_concurrency"] = args.large_concurrency
                cfg["backends"][1]["ttft_slo_s"] = 1.0
                cfg["cache"]["policies"] = scaled_policies(timeline)
                cfg["adaptive"] = {"enabled": variant == "on", "interval_s": 1.0}
                cfg["cache"]["coalesce"] = {"enabled": args.coalesce == "on"}
                with cachegate(cfg) as base:
                    results[variant] = asyncio.run(run_variant(base, workload))
    report(args, timeline, workload, room, results)


def report(
    args: argparse.Namespace,
    timeline: Timeline,
    workload: Workload,
    room: Headroom,
    results: dict[str, tuple[list[Outcome], Watch]],
) -> None:
    print(f"machine: {machine()}")
    print(
        f"{len(workload.requests)} requests over {timeline.wall_s:.0f} s (Azure conv trace "
        f"arrivals, {args.base_rps} req/s, ×{args.surge} from {timeline.surge_at:.0f} to "
        f"{timeline.surge_end:.0f} s); large backend {args.large_concurrency} at a time; "
        f"coalescing (single-flight) {args.coalesce} in both variants; "
        f"1 day = {timeline.day_s:.0f} s (TTLs: "
        + ", ".join(f"{c} {timeline.ttl(c):.1f} s" for c in sorted(DEFAULT_POLICIES))
        + ")"
    )
    print("| phase | adaptation | requests | large calls | hit rate | false-hit rate "
          "| p50 ms | p99 ms | wait p50 ms | wait p99 ms | errors |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows: dict[tuple[str, str], PhaseSummary] = {}
    for name, (lo, hi) in timeline.phases().items():
        for variant in ("off", "on"):
            s = summarise(results[variant][0], lo, hi)
            rows[(name, variant)] = s
            print(f"| {name} | {variant} | {s.requests} | {s.large_calls} | {s.hit_rate:.1%} "
                  f"| {s.false_hit_rate:.2%} | {s.p50_ms:.0f} | {s.p99_ms:.0f} "
                  f"| {s.wait_p50_ms:.0f} | {s.wait_p99_ms:.0f} | {s.errors} |")  # fmt: skip
    off, on = rows[("overload", "off")], rows[("overload", "on")]
    cut = 1 - on.large_calls / max(1, off.large_calls)
    rise = (on.false_hit_rate - off.false_hit_rate) * 100
    print(f"overload: {cut:.1%} fewer calls to the large backend with adaptation "
          f"({off.large_calls} → {on.large_calls}); false-hit rate {rise:+.2f} points")  # fmt: skip
    lo, hi = timeline.surge_at, timeline.surge_end
    cat_off = by_category(results["off"][0], lo, hi)
    cat_on = by_category(results["on"][0], lo, hi)
    print("overload by category, large calls off → on (wrong hits off → on): " + "; ".join(
        f"{c} {cat_off[c][0]} → {cat_on.get(c, (0, 0))[0]} "
        f"({cat_off[c][1]} → {cat_on.get(c, (0, 0))[1]})" for c in cat_off))  # fmt: skip
    print(
        f"overload headroom (intents, a perfect matcher): of {room.requests} requests "
        f"{room.first_asks} are first asks (a miss under any policy), {room.expired} find "
        f"only an expired answer, {room.stretchable} of them within ttl_max_factor × TTL"
    )
    repeats = {v: in_flight_repeats(results[v][0], lo, hi) for v in ("off", "on")}
    stale = {v: stale_hits(results[v][0], timeline, lo, hi) for v in ("off", "on")}
    print(
        f"overload: backend calls made while the same intent was already waiting for the "
        f"backend (nothing stored yet) off {repeats['off'][0]} ({repeats['off'][1]} with the "
        f"same text), on {repeats['on'][0]} ({repeats['on'][1]}); right hits "
        f"with no answer stored within the TTL before them (served stale) off {stale['off']}, "
        f"on {stale['on']}"
    )
    back = back_after(results["on"][1], timeline)
    print(
        "policies back at configured values "
        + (f"{back:.0f} s after the surge" if back is not None else "— never relaxed")
        + f" ({results['on'][1].samples} samples)"
    )


# -- offline band analysis ------------------------------------------------------------------


@dataclass
class Band:
    """Misses a relaxed setting would have turned into hits, and how many rightly."""

    extra: int = 0
    right: int = 0


def band(args: argparse.Namespace) -> None:
    from bench.embcache import embed_texts
    from cache import EquivalenceChecker

    checker = EquivalenceChecker.load_default()
    default = checker.default_threshold
    floors = (0.80, 0.76, 0.74, 0.70, 0.65, 0.60, 0.50)
    table: dict[tuple[str, float], dict[float, Band]] = defaultdict(lambda: defaultdict(Band))
    asked: dict[str, int] = defaultdict(int)
    for seed in args.seeds:
        wl = build_workload(part=args.part, speedup=60, minutes=1, max_requests=args.requests,
                            seed=seed)  # fmt: skip
        texts = sorted({r.text for r in wl.requests})
        vecs = embed_texts(texts)
        row = {t: i for i, t in enumerate(texts)}
        stored: list[tuple[int, str]] = []  # (text row, intent)
        keys: set[str] = set()
        for r in wl.requests:
            asked[r.category] += 1
            cosine_floor = float(DEFAULT_POLICIES[r.category]["similarity_threshold"])
            key = r.text.casefold().strip()
            if key in keys:  # the exact tier answers
                continue
            q = vecs[row[r.text]]
            scored: list[tuple[float, float, bool]] = []  # (score, cosine, same intent)
            if stored:
                sims = vecs[[s[0] for s in stored]] @ q
                for o in np.argsort(-sims)[:5]:
                    if sims[o] < args.cosine_floor:
                        break
                    cand = texts[stored[o][0]]
                    score = checker.check(r.text, q, cand, vecs[stored[o][0]]).score
                    scored.append((score, float(sims[o]), stored[o][1] == r.intent))
            if any(c >= cosine_floor and s >= default for s, c, _ in scored):
                continue  # a hit as configured
            for cos in sorted({cosine_floor, args.cosine_floor}):
                for eq in floors:
                    ok = [x for x in scored if x[1] >= cos and x[0] >= eq]
                    if ok:
                        b = table[(r.category, cos)][eq]
                        b.extra += 1
                        b.right += max(ok)[2]
            stored.append((row[r.text], r.intent))
            keys.add(key)
    print(
        f"{args.part} part, seeds {args.seeds}: requests per category {dict(sorted(asked.items()))}"
    )
    print(
        f"checker default threshold {default:.3f}; right / extra hits among misses when relaxed to:"
    )
    print("| category | cosine ≥ | " + " | ".join(f"equivalence ≥ {e}" for e in floors) + " |")
    print("|---|---|" + "---|" * len(floors))
    for (cat, cos), cells in sorted(table.items()):
        print(f"| {cat} | {cos} | " + " | ".join(
            f"{cells[e].right}/{cells[e].extra}" for e in floors) + " |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    r = sub.add_parser("run", help="end to end, adaptation off and on")
    r.add_argument("--wall-s", type=float, default=140)
    r.add_argument("--surge-at", type=float, default=50)
    r.add_argument("--surge-s", type=float, default=45)
    r.add_argument("--day-s", type=float, default=30, help="wall seconds standing for a day")
    r.add_argument("--base-rps", type=float, default=3.5)
    r.add_argument("--surge", type=float, default=3.0, help="rate multiplier in the surge")
    r.add_argument("--large-concurrency", type=int, default=4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--coalesce",
        choices=("on", "off"),
        default="on",
        help="single-flight for misses (cache.coalesce, on by default in cachegate)",
    )
    b = sub.add_parser("band", help="offline: what relaxing each category would buy")
    b.add_argument("--part", default="dev", choices=("dev", "test"))
    b.add_argument("--requests", type=int, default=2000)
    b.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    b.add_argument("--cosine-floor", type=float, default=0.86)
    args = parser.parse_args()
    if args.command == "band":
        band(args)
    else:
        if args.command is None:
            args = parser.parse_args(["run"])
        run(args)


if __name__ == "__main__":
    main()
