"""Workload replay: cachegate and baselines on a real arrival trace, every hit judged.

Builds a workload (``bench.workload``: texts with known intents, arrivals and token counts
from a trace, time-compressed), starts two simulated backends whose latency follows each
request's output tokens (``bench.simserver``), and replays the same workload, open loop,
against each variant in turn, from this process:

- ``none``: the large backend directly (no cache);
- ``exact``: cachegate with similarity threshold 1.0 for every category and the equivalence
  check off, so only its exact tier (and byte-identical vectors) can hit;
- ``gptcache``: GPTCache 0.1.44 (sqlite + faiss, same MiniLM embedder) as a server process,
  its threshold fitted on the dev part;
- ``global``: cachegate with one policy for every category: the (cosine, equivalence)
  threshold pair with the most hits on the dev part within the ``--max-false`` false-hit
  share (:func:`fit_global`), the best single global policy under the false-hit target;
- ``cachegate``: cachegate with its built-in per-category policies.

A hit is correct when the served answer names the digest of a text of the request's own
intent (the simulated backend's answers name a digest of the prompt they answer).

``--fit-policies`` replays the dev part offline instead (no servers) and prints, per
category, hits and false hits against the cosine threshold with cachegate's rule (exact
text, else the best of 5 candidates the equivalence check accepts), and the per-category
thresholds that dominate the single fitted global one on dev (:func:`fit_policies`): how
``proxy.wiring.DEFAULT_POLICIES`` thresholds are chosen.

    .venv/bin/python -m bench.replay [--speedup 5] [--minutes 2] [--seed 0] \
        [--variants none exact gptcache global cachegate] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from backends.sim import digest
from bench.baselines import fit_threshold, gptcache_threshold
from bench.embcache import embed_texts
from bench.procs import machine
from bench.report import Outcome, Summary, by_category, category_table, comparison_table
from bench.targets import artifact_present, cachegate, cachegate_config, gptcache_server, sim
from bench.workload import TRACES, Workload, build_workload, paraphrase_repeats, reuse_ceiling
from cache import EquivalenceChecker

ANSWER = re.compile(r"answer to ([0-9a-f]{12})")
VARIANTS = ("none", "exact", "global", "cachegate", "gptcache")


class ReplayError(RuntimeError):
    """The replay could not run (target down) or too many requests failed."""


def _judge(body: dict[str, Any], intents: dict[str, str], intent: str) -> bool:
    try:
        content = str(body["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        return False
    m = ANSWER.search(content)
    return m is not None and intents.get(m.group(1)) == intent


class _Progress:
    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.done = self.hits = self.errors = 0

    def draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(1, self.total)
        print(f"\r{self.label:>10} [{'#' * filled}{'.' * (width - filled)}] "
              f"{self.done}/{self.total} hits {self.hits} errors {self.errors}",
              end="\n" if final else "", file=sys.stderr, flush=True)  # fmt: skip


async def replay(
    base_url: str,
    workload: Workload,
    *,
    model: str = "large",
    label: str = "replay",
    progress: bool = True,
    max_error_rate: float | None = 0.01,
    timeout_s: float = 60.0,
) -> list[Outcome]:
    """Sends every request at its arrival time (open loop); raises :class:`ReplayError`
    when ``base_url`` is unreachable or more than ``max_error_rate`` of requests fail."""
    intents = {digest(r.text): r.intent for r in workload.requests}
    bar = _Progress(label, len(workload.requests), progress)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=1024)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            async with session.get(base_url + "/models", timeout=aiohttp.ClientTimeout(5)) as r:
                await r.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ReplayError(
                f"{label}: cannot reach {base_url} ({exc!r}); is it running?"
            ) from exc

        async def one(req: Any) -> Outcome:
            body = {"model": model, "messages": [{"role": "user", "content": req.text}],
                    "max_tokens": req.max_tokens}  # fmt: skip
            started = time.perf_counter()
            try:
                async with session.post(base_url + "/chat/completions", json=body) as resp:
                    data = await resp.json(content_type=None)
                    latency = time.perf_counter() - started
                    h = resp.headers
                    cache = h.get("x-cachegate-cache", "none")
                    out = Outcome(
                        request=req,
                        status=resp.status,
                        latency_s=latency,
                        cache=cache,
                        correct=_judge(data, intents, req.intent) if cache == "hit" else None,
                        backend=h.get("x-cachegate-backend")
                        or (None if cache != "none" else model),
                        classified=h.get("x-cachegate-category"),
                        error=None if resp.status == 200 else str(data)[:200],
                    )
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                out = Outcome(req, 0, time.perf_counter() - started, "none", None, None, None,
                              repr(exc))  # fmt: skip
            bar.done += 1
            bar.hits += out.cache == "hit"
            bar.errors += out.status != 200
            return out

        async def ticker() -> None:
            while True:
                bar.draw()
                await asyncio.sleep(0.5)

        tick = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        tasks = []
        for req in workload.requests:
            delay = req.at_s - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(req)))
        outcomes = list(await asyncio.gather(*tasks))
        tick.cancel()
        bar.draw(final=True)
    failed = [o for o in outcomes if o.status != 200]
    if max_error_rate is not None and len(failed) > max_error_rate * len(outcomes):
        raise ReplayError(
            f"{label}: {len(failed)} of {len(outcomes)} requests failed; first: "
            f"status {failed[0].status} {failed[0].error}"
        )
    return outcomes


@contextmanager
def _variant(name: str, small: str, large: str, tmp: Path, global_p: Policy, gpt_t: float,
             equivalence: bool, router: bool) -> Iterator[str]:  # fmt: skip
    db = tmp / f"{name}.db"
    target: AbstractContextManager[str]
    policy: dict[str, Any]
    if name == "none":
        target = nullcontext(large)
    elif name == "gptcache":
        target = gptcache_server(large, gpt_t, "sim-large")
    elif name == "exact":
        policy = {"similarity_threshold": 1.0, "threshold_floor": 1.0, "ttl_max_factor": 1.0}
        target = cachegate(cachegate_config(small, large, db, default_policy=policy,
                                            equivalence=False, router=router))  # fmt: skip
    elif name == "global":
        policy = global_policy(global_p, EquivalenceChecker.load_default().default_threshold)
        target = cachegate(cachegate_config(small, large, db, default_policy=policy,
                                            equivalence=equivalence, router=router))  # fmt: skip
    elif name == "cachegate":
        target = cachegate(cachegate_config(small, large, db, equivalence=equivalence,
                                            router=router))  # fmt: skip
    else:
        raise ReplayError(f"unknown variant {name!r}; choose from {VARIANTS}")
    with target as url:
        yield url


def global_policy(global_p: Policy, default_equivalence: float) -> dict[str, Any]:
    """The config's ``cache.default_policy`` of the ``global`` variant: one policy for
    every category (same thresholds and TTL, no load relaxation, all enabled).

    Every threshold is set explicitly: a field left out keeps the built-in category's own
    value (math's and conversation's equivalence threshold is 0.95), and the variant would
    be partly per-category."""
    cos_t, eq_t = global_p
    eq = default_equivalence if eq_t is None else eq_t
    return {"enabled": True, "similarity_threshold": cos_t, "threshold_floor": cos_t,
            "equivalence_threshold": eq, "equivalence_floor": eq, "ttl_seconds": 86_400.0,
            "ttl_max_factor": 1.0, "eviction": "lru"}  # fmt: skip


def equivalence_on(args: argparse.Namespace) -> bool:
    return artifact_present("cache", "equivalence.npz") and not args.no_equivalence


async def run_variants(args: argparse.Namespace, workload: Workload,
                       global_p: Policy, gpt_t: float) -> dict[str, list[Outcome]]:  # fmt: skip
    equivalence = equivalence_on(args)
    router = artifact_present("router", "default_router.npz")
    if not equivalence:
        print("note: cachegate runs without the equivalence check "
              "(cache/data/equivalence.npz not committed, or --no-equivalence)")  # fmt: skip
    if not router:
        print("note: router disabled (router/data/default_router.npz not committed)")
    model = args.model if args.model != "auto" or router else "large"
    results: dict[str, list[Outcome]] = {}
    with (
        sim("small", args.latency_scale, args.max_tokens_cap) as small,
        sim("large", args.latency_scale, args.max_tokens_cap) as large,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for name in args.variants:
            with _variant(name, small, large, Path(tmp), global_p, gpt_t, equivalence,
                          router) as url:  # fmt: skip
                use = "sim-large" if name in ("none", "gptcache") else model
                # One variant failing requests (GPTCache falling behind, say) is reported
                # in its errors column, not allowed to throw away the others' results.
                outcomes = await replay(url, workload, model=use, label=name,
                                        max_error_rate=None, timeout_s=args.timeout_s)  # fmt: skip
                failed = sum(o.status != 200 for o in outcomes)
                if failed > 0.01 * len(outcomes):
                    print(f"WARNING: {name}: {failed} of {len(outcomes)} requests failed "
                          f"(timeouts after {args.timeout_s:.0f} s count as failures)")  # fmt: skip
                results[name] = outcomes
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trace", default="azure-conv", choices=sorted(TRACES))
    p.add_argument("--speedup", type=float, default=5.0, help="trace seconds per wall second")
    p.add_argument("--minutes", type=float, default=2.0, help="wall-clock minutes per variant")
    p.add_argument("--start-min", type=float, default=0.0, help="trace minute to start at")
    p.add_argument("--max-requests", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens-cap", type=int, default=64)
    p.add_argument("--latency-scale", type=float, default=1.0)
    p.add_argument(
        "--model", default="large", help="what cachegate variants ask for (auto: routed)"
    )
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--max-false", type=float, default=0.01, help="false-hit share the fit allows")
    p.add_argument(
        "--global-threshold", type=float, help="skip fitting; the global variant's cosine threshold"
    )
    p.add_argument("--global-equivalence", type=float,
                   help="with --global-threshold: its equivalence threshold (default: the "
                   "checker's)")  # fmt: skip
    p.add_argument("--gptcache-threshold", type=float, help="skip fitting; GPTCache's own scale")
    p.add_argument("--no-equivalence", action="store_true")
    p.add_argument("--timeout-s", type=float, default=120.0, help="per request")
    p.add_argument("--json", type=Path, help="write summaries here")
    p.add_argument("--dump", type=Path, help="write every request's outcome here (JSONL)")
    p.add_argument(
        "--frontier",
        type=int,
        nargs="+",
        metavar="SEED",
        help="offline on the test part of these seeds: every single global policy of the "
        "grid against the built-in per-category policies (hits, false hits)",
    )
    p.add_argument(
        "--fit-policies",
        action="store_true",
        help="offline on the dev part: per-category thresholds that dominate the global one",
    )
    return p.parse_args(argv)


def fit(args: argparse.Namespace, common: dict[str, Any]) -> tuple[Policy, float]:
    """(policy of the global variant, GPTCache threshold), fitted on dev."""
    gpt_t = args.gptcache_threshold
    if args.global_threshold is not None or not {"global", "gptcache"} & set(args.variants):
        global_p: Policy = (args.global_threshold or 0.9, args.global_equivalence)
        return global_p, gpt_t or gptcache_threshold(global_p[0])
    dev = build_workload(part="dev", **common)
    best, _ = fit_threshold(dev.requests, args.max_false)
    print(f"fitted on dev ({len(dev.requests)} requests, disjoint intents), cosine only "
          f"(GPTCache): {best.threshold:.2f} -> {best.hits / best.requests:.1%} hits, "
          f"{best.false_share:.2%} false hits / hits")  # fmt: skip
    gpt_t = gpt_t or gptcache_threshold(best.threshold)
    global_p = (best.threshold, None)
    if equivalence_on(args):
        # cachegate's global variant keeps the equivalence check: fit both its thresholds.
        checker = EquivalenceChecker.load_default()
        global_p, hits, wrong = fit_global(dev.requests, checker, args.max_false)
        print(f"  one policy for all, with cachegate's equivalence check (global variant): "
              f"{describe(global_p)} -> {hits / len(dev.requests):.1%} hits, "
              f"{wrong / max(hits, 1):.2%} false hits / hits")  # fmt: skip
    return global_p, gpt_t


POLICY_GRID = (0.80, 0.85, 0.90, 0.93, 0.95, 0.97)  # cosine thresholds
EQUIVALENCE_GRID = (None, 0.90, 0.95)  # None: the checker's default threshold
Policy = tuple[float, float | None]  # (cosine threshold, equivalence threshold)
FALSE_HIT_PRICES = (1, 2, 3, 5, 10, 20, 50, 100)  # missed hits one false hit is worth


def describe(policy: Policy) -> str:
    eq = "the checker's default" if policy[1] is None else f"{policy[1]:.2f}"
    return f"cosine {policy[0]:.2f}, equivalence {eq}"


def strictness(policy: Policy, default_equivalence: float) -> tuple[float, float]:
    """Sort key: higher is stricter (cosine, then equivalence; ``None`` is the default)."""
    return policy[0], default_equivalence if policy[1] is None else policy[1]


def global_points(
    requests: Sequence[Any], vecs: Any, checker: EquivalenceChecker,
    memo: dict[tuple[str, str], float],
) -> dict[Policy, tuple[int, int]]:  # fmt: skip
    """(hits, false hits) of every single policy of the grid applied to every request."""
    one = dict.fromkeys((r.text for r in requests), "all")
    return {
        (t, e): simulate_categories(requests, vecs, {"all": (t, e)}, checker, memo, one)["all"]
        for t in POLICY_GRID
        for e in EQUIVALENCE_GRID
    }


def fit_global(
    requests: Sequence[Any], checker: EquivalenceChecker, max_false: float
) -> tuple[Policy, int, int]:
    """The one (cosine, equivalence) policy for every category (:data:`POLICY_GRID` x
    :data:`EQUIVALENCE_GRID`) with the most hits on ``requests`` whose false hits are
    within ``max_false`` of its hits (ties: fewer false hits, then the strictest); the
    strictest point when none is. With its hits and false hits."""
    vecs = embed_texts([r.text for r in requests])
    points = global_points(requests, vecs, checker, {})
    default = checker.default_threshold
    ok = [p for p, (h, w) in points.items() if w <= max_false * max(h, 1)]
    if not ok:
        best = max(points, key=lambda p: strictness(p, default))
    else:
        best = max(ok, key=lambda p: (points[p][0], -points[p][1], *strictness(p, default)))
    return best, *points[best]


def simulate_categories(
    requests: Sequence[Any],
    vecs: Any,
    policies: dict[str, Policy],
    checker: EquivalenceChecker,
    memo: dict[tuple[str, str], float] | None = None,
    category_of: dict[str, str] | None = None,
) -> dict[str, tuple[int, int]]:
    """(hits, false hits) per policy category of an offline cache with that category's
    (cosine, equivalence) thresholds and cachegate's rule: exact text, else the
    best-scoring of the 5 nearest stored entries at or above the cosine threshold that the
    checker accepts. The policy category is ``category_of[text]`` (what cachegate's
    classifier says; the workload's own category without it); a category missing from
    ``policies`` is not cached. ``memo`` keeps scores across calls (a text's vector is
    fixed)."""
    import numpy as np

    memo = {} if memo is None else memo
    category_of = category_of or {r.text: r.category for r in requests}
    stored = np.zeros((len(requests), vecs.shape[1]), dtype=np.float32)
    intents: list[str] = []
    texts: list[str] = []
    exact: dict[str, int] = {}
    out = {c: [0, 0] for c in policies}
    for r, v in zip(requests, vecs, strict=True):
        cat = category_of[r.text]
        if cat not in policies:
            continue
        n, (limit, eq) = len(intents), policies[cat]
        eq = checker.default_threshold if eq is None else eq
        j = exact.get(r.text, -1)
        if j < 0 and n:
            sims = stored[:n] @ v
            best = -1.0
            for k in np.argsort(-sims)[:5]:
                if sims[k] < limit:
                    break
                key = (r.text, texts[k])
                if key not in memo:  # a vetoed pair never passes: -1 is below any threshold
                    verdict = checker.check(r.text, v, texts[k], stored[k], threshold=0.0)
                    memo[key] = verdict.score if verdict.equivalent else -1.0
                if memo[key] >= eq and memo[key] > best:
                    j, best = int(k), memo[key]
        if j >= 0:
            out[cat][0] += 1
            out[cat][1] += intents[j] != r.intent
            continue
        stored[n] = v
        intents.append(r.intent)
        texts.append(r.text)
        exact.setdefault(r.text, n)
    return {c: (h, w) for c, (h, w) in out.items()}


def classified(requests: Sequence[Any], vecs: Any) -> dict[str, str]:
    """The category cachegate's default classifier gives each text (its policy's)."""
    from classifier import Classifier

    clf = Classifier.load_default()
    return {r.text: clf.classify(v, r.text).category for r, v in zip(requests, vecs, strict=True)}


def fit_policies(
    requests: Sequence[Any], checker: EquivalenceChecker, global_p: Policy
) -> dict[str, Policy]:
    """Per-category (cosine, equivalence) thresholds fitted on ``requests`` (the dev part).

    Requests take the policy of the category cachegate's classifier gives them, as in the
    proxy. Each category in turn (the others at the global policy ``global_p``) is
    replayed at every grid point (:data:`POLICY_GRID` x :data:`EQUIVALENCE_GRID`, plus the
    global policy). For a price ``lam`` of a false hit in missed hits, each category takes
    the point with the most ``hits - lam * false hits`` (ties: fewer false hits, then the
    strictest thresholds); ``lam`` is the one of :data:`FALSE_HIT_PRICES` whose choice has
    the most hits in total among those with more hits and fewer false hits than the global
    policy (added over categories), else the global policy everywhere.
    """
    vecs = embed_texts([r.text for r in requests])
    of = classified(requests, vecs)
    cats = sorted(set(of.values()) - {"creative"})  # not cached by default
    memo: dict[tuple[str, str], float] = {}
    start: dict[str, Policy] = dict.fromkeys(cats, global_p)
    base = simulate_categories(requests, vecs, start, checker, memo, of)
    grid: list[Policy] = [(t, e) for t in POLICY_GRID for e in EQUIVALENCE_GRID]
    points: dict[str, dict[Policy, tuple[int, int]]] = {}
    for c in cats:
        points[c] = {start[c]: base[c]}
        for policy in grid:
            if policy not in points[c]:
                at = {**start, c: policy}
                points[c][policy] = simulate_categories(requests, vecs, at, checker, memo, of)[c]
    default = checker.default_threshold

    def pick(c: str, lam: float) -> Policy:
        scored = points[c]
        return max(scored, key=lambda p: (scored[p][0] - lam * scored[p][1], -scored[p][1],
                                          *strictness(p, default)))  # fmt: skip

    total_hits, total_false = sum(h for h, _ in base.values()), sum(w for _, w in base.values())
    best: tuple[int, dict[str, Policy]] | None = None
    for lam in FALSE_HIT_PRICES:
        choice = {c: pick(c, lam) for c in cats}
        hits = sum(points[c][p][0] for c, p in choice.items())
        wrong = sum(points[c][p][1] for c, p in choice.items())
        print(f"price of a false hit {lam:g} missed hits: {hits} hits, {wrong} false on dev")
        if hits > total_hits and wrong < total_false and (best is None or hits > best[0]):
            best = (hits, choice)
    chosen = start if best is None else best[1]
    print("\n| category | global: hits/false | chosen (cosine, equivalence) | hits/false |")
    print("|---|---|---|---|")
    for c in cats:
        eq = "default" if chosen[c][1] is None else f"{chosen[c][1]:.2f}"
        hits, wrong = points[c][chosen[c]]
        print(f"| {c} | {base[c][0]}/{base[c][1]} | {chosen[c][0]:.2f}, {eq} | {hits}/{wrong} |")
    return chosen


def builtin_policies() -> dict[str, Policy]:
    """The (cosine, equivalence) thresholds of ``proxy.wiring.DEFAULT_POLICIES``' cached
    categories: what the ``cachegate`` variant runs with."""
    from proxy.wiring import DEFAULT_POLICIES

    return {
        c: (float(p["similarity_threshold"]), p.get("equivalence_threshold"))
        for c, p in DEFAULT_POLICIES.items()
        if p.get("enabled", True)
    }


def frontier(common: dict[str, Any], seeds: Sequence[int], checker: EquivalenceChecker) -> None:
    """Offline on the test part of each seed (the rule :func:`simulate_categories`
    replays; it matches the live replay's counts): hits and false hits of every single
    global policy of the grid, added over ``seeds``, against the built-in per-category
    policies. Says which global policies the per-category ones beat on both counts, and
    which beat them on one: a picture of the whole trade-off, not one fitted point."""
    builtin = builtin_policies()
    grid = [(t, e) for t in POLICY_GRID for e in EQUIVALENCE_GRID]
    totals = dict.fromkeys(grid, (0, 0))
    per = [0, 0]
    requests = 0
    memo: dict[tuple[str, str], float] = {}
    for seed in seeds:
        test = build_workload(part="test", **{**common, "seed": seed})
        vecs = embed_texts([r.text for r in test.requests])
        requests += len(test.requests)
        for policy, (h, w) in global_points(test.requests, vecs, checker, memo).items():
            totals[policy] = (totals[policy][0] + h, totals[policy][1] + w)
        res = simulate_categories(test.requests, vecs, builtin, checker, memo,
                                  classified(test.requests, vecs))  # fmt: skip
        per[0] += sum(h for h, _ in res.values())
        per[1] += sum(w for _, w in res.values())
    print(f"\n#### Single global policies against the built-in per-category ones (test part, "
          f"seeds {', '.join(map(str, seeds))}: {requests} requests, offline)\n")  # fmt: skip
    print("| policy | hits | false hits | per-category is |")
    print("|---|---|---|---|")
    for policy in grid:
        h, w = totals[policy]
        if h <= per[0] and w >= per[1]:
            verdict = "ahead on both"
        elif h >= per[0] and w <= per[1]:
            verdict = "behind on both"
        else:
            verdict = "ahead on false hits" if w > per[1] else "ahead on hits"
        print(f"| global {describe(policy)} | {h} | {w} | {verdict} |")
    print(f"| **per-category (built-in)** | **{per[0]}** | **{per[1]}** | |")


def write_outputs(args: argparse.Namespace, results: dict[str, list[Outcome]],
                  global_p: Policy, gpt_t: float) -> None:  # fmt: skip
    summaries: dict[str, Summary] = {}
    given = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    out: dict[str, Any] = {"machine": machine(), "args": given,
                           "global_threshold": global_p[0], "global_equivalence": global_p[1],
                           "gptcache_threshold": gpt_t}  # fmt: skip
    for name, outcomes in results.items():
        cats = by_category(outcomes)
        summaries[name] = cats["overall"]
        print(category_table(name, cats))
        out[name] = {c: s.as_dict() for c, s in cats.items()}
    print(f"\n#### Side by side (global: {describe(global_p)}; "
          f"GPTCache threshold {gpt_t:.3f})\n")  # fmt: skip
    print(comparison_table(summaries, "none" if "none" in summaries else None))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if args.dump:
        with args.dump.open("w") as fh:
            for name, outcomes in results.items():
                for o in outcomes:
                    row = {"variant": name, **asdict(o.request), **asdict(o)}
                    del row["request"]
                    fh.write(json.dumps(row) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # A plain kill should still stop the processes this one started (context managers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    common: dict[str, Any] = dict(trace=args.trace, speedup=args.speedup, minutes=args.minutes,
                                  start_min=args.start_min, max_requests=args.max_requests,
                                  max_tokens_cap=args.max_tokens_cap, seed=args.seed)  # fmt: skip
    print(f"machine: {machine()}")
    print(f"command: python -m bench.replay {' '.join(sys.argv[1:] if argv is None else argv)}")
    test = build_workload(part="test", **common)
    print(f"workload: {len(test.requests)} requests over {test.requests[-1].at_s:.0f} s "
          f"({args.trace}, speedup {args.speedup}), intents reused by "
          f"{reuse_ceiling(test.requests):.1%} of requests (a perfect cache's hit rate), "
          f"{paraphrase_repeats(test.requests)} of them in new words")  # fmt: skip
    if args.frontier:
        frontier(common, args.frontier, EquivalenceChecker.load_default())
        return
    if args.fit_policies:
        dev = build_workload(part="dev", **common)
        checker = EquivalenceChecker.load_default()
        if args.global_threshold is not None:
            global_p: Policy = (args.global_threshold, args.global_equivalence)
        else:
            global_p = fit_global(dev.requests, checker, args.max_false)[0]
        print(f"dev: {len(dev.requests)} requests; global policy {describe(global_p)}")
        chosen = fit_policies(dev.requests, checker, global_p)
        vecs = embed_texts([r.text for r in dev.requests])
        flat: dict[str, Policy] = dict.fromkeys(chosen, global_p)
        of = classified(dev.requests, vecs)
        for name, ts in (("global", flat), ("per-category", chosen)):
            res = simulate_categories(dev.requests, vecs, ts, checker, category_of=of)
            hits, wrong = sum(h for h, _ in res.values()), sum(w for _, w in res.values())
            print(f"dev, {name}: {hits} hits ({hits / len(dev.requests):.1%}), {wrong} false")
        return
    global_p, gpt_t = fit(args, common)
    results = asyncio.run(run_variants(args, test, global_p, gpt_t))
    write_outputs(args, results, global_p, gpt_t)


if __name__ == "__main__":
    main()
