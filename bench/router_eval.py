"""Evaluate the learned router the way RouteLLM does (APGR, CPT) on public outcome data.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.router_eval [--seeds 0,1,2,3,4] [--skip-gsm8k] [--examples]

Data: ../shared/data/router (RouteLLM's evaluation outcomes; strong = GPT-4,
weak = Mixtral-8x7B). Split: MMLU rows are split 50/50 *within each subject*
with ``numpy.random.default_rng(seed)``: the router is fitted on one half (kNN
memory, topic priors and the stacker from that half only) and
scored on the other. Each seed of ``--seeds`` is one such split; the summary
gives the mean and spread over them (one split's figure moves by about ±0.01
APGR with the seed alone). Calibration and latency tables use the first seed.
Cross-benchmark: fitted on all of MMLU, scored on GSM8K. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np

from bench.embcache import SHARED_DATA, embed_texts
from router import (
    ExampleCandidate,
    ExampleConfig,
    FitParams,
    FitResult,
    JudgeConfig,
    LearnedModel,
    RouteFeatures,
    RouterConfig,
    RouteRecord,
    RoutingQuality,
    arrays_from_records,
    calibrate_threshold,
    compare,
    estimate_tokens,
    fit_model,
    large_share_at,
    router_from_model,
    routing_quality,
    select_examples,
)

DATA = SHARED_DATA / "router"
KINDS = ("blend", "logistic", "knn")


def load(name: str) -> tuple[list[dict[str, object]], list[RouteRecord]]:
    rows = [json.loads(line) for line in (DATA / name).open()]
    records = [
        RouteRecord(
            prompt=str(r["prompt"]),
            small_ok=bool(r["weak_correct"]),
            large_ok=bool(r["strong_correct"]),
            category="math" if r["benchmark"] == "gsm8k" else "general",
            group=str(r.get("subject", r["benchmark"])),
        )
        for r in rows
    ]
    return rows, records


def split_by_subject(rows: Sequence[dict[str, object]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    subjects = np.array([str(r["subject"]) for r in rows])
    train = np.zeros(len(rows), dtype=bool)
    for subject in np.unique(subjects):
        idx = np.flatnonzero(subjects == subject)
        rng.shuffle(idx)
        train[idx[: len(idx) // 2]] = True
    return train


def features(records: Sequence[RouteRecord], vectors: np.ndarray) -> list[RouteFeatures]:
    arrays = arrays_from_records(records, vectors)
    return [
        RouteFeatures(vector=v, category=r.category, prompt_tokens=int(t))
        for v, r, t in zip(vectors, records, arrays.prompt_tokens, strict=True)
    ]


def outcomes(records: Sequence[RouteRecord]) -> tuple[np.ndarray, np.ndarray]:
    small = np.array([r.small_ok for r in records], dtype=np.float64)
    large = np.array([r.large_ok for r in records], dtype=np.float64)
    return small, large


def quality_rows(
    scores: dict[str, np.ndarray], small: np.ndarray, large: np.ndarray, seed: int
) -> list[tuple[str, RoutingQuality]]:
    out = [(kind, routing_quality(s, small, large)) for kind, s in scores.items()]
    rng = np.random.default_rng(seed)
    randoms = [routing_quality(rng.random(small.size), small, large) for _ in range(50)]
    mean = RoutingQuality(
        *(float(np.mean([getattr(q, f) for q in randoms])) for f in ("apgr", "cpt50", "cpt80"))
    )
    out.append(("random (mean of 50)", mean))
    # Oracle: large exactly where it gains, small exactly where small alone is right.
    out.append(("oracle", routing_quality(-(large - small), small, large)))
    return out


def print_quality(title: str, rows: list[tuple[str, RoutingQuality]], n: int) -> None:
    print(f"\n### {title} (n={n})\n")
    print("| router | APGR | CPT(50%) | CPT(80%) |\n| --- | --- | --- | --- |")
    for name, q in rows:
        print(f"| {name} | {q.apgr:.3f} | {100 * q.cpt50:.1f}% | {100 * q.cpt80:.1f}% |")


def latency(router_feats: list[RouteFeatures], model: LearnedModel) -> None:
    """Wall time and thread CPU time per decide(); on a shared machine the wall-clock
    tail is the scheduler's, the CPU time is the router's own. Run with
    OPENBLAS_NUM_THREADS=1: a BLAS thread pool only adds contention to one matvec."""
    print("\n### Decision latency (one request at a time)\n")
    print("| router | wall p50 | wall p99 | CPU p50 | CPU p99 |\n| --- | --- | --- | --- | --- |")
    for kind in KINDS:
        router = router_from_model(model, RouterConfig(kind=kind))
        for f in router_feats[:50]:
            router.decide(f)
        wall, cpu = [], []
        for f in router_feats[:3000]:
            t0, c0 = time.perf_counter(), time.thread_time()
            router.decide(f)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        w50, w99 = np.percentile(np.array(wall) * 1000, [50, 99])
        c50, c99 = np.percentile(np.array(cpu) * 1000, [50, 99])
        print(f"| {kind} | {w50:.3f} ms | {w99:.3f} ms | {c50:.3f} ms | {c99:.3f} ms |")


def examples_report(gsm: Sequence[RouteRecord], gsm_vectors: np.ndarray) -> None:
    """IC example selection on GSM8K dev with the GSM8K train gold answers as the pool."""
    gold = [json.loads(line) for line in (DATA / "gsm8k_train_gold.jsonl").open()]
    pool = embed_texts([g["question"] for g in gold])
    sims = gsm_vectors @ pool.T
    top = np.argsort(-sims, axis=1)[:, :20]
    print("\n### In-context examples: GSM8K dev requests, GSM8K train gold answers as the pool\n")
    print("| similarity floor | requests with >= 1 example | mean examples | mean tokens added |")
    print("| --- | --- | --- | --- |")
    for floor in (0.5, 0.6, 0.7, 0.8):
        config = ExampleConfig(k=3, token_budget=1024, similarity_floor=floor)
        counts, tokens = [], []
        for row, idx in enumerate(top):
            cands = [
                ExampleCandidate(
                    entry_id=str(j),
                    tenant="t",
                    request_text=gold[j]["question"],
                    answer_text=gold[j]["answer"],
                    similarity=float(np.clip(sims[row, j], -1.0, 1.0)),
                    utility=0.5,
                    tier="large",
                )
                for j in idx
            ]
            chosen = select_examples(
                cands, tenant="t", category="math", config=config, count_tokens=estimate_tokens
            )
            counts.append(len(chosen))
            tokens.append(sum(estimate_tokens(c.request_text + c.answer_text) for c in chosen))
        has = np.mean(np.array(counts) > 0)
        print(f"| {floor} | {has:.1%} | {np.mean(counts):.2f} | {np.mean(tokens):.0f} |")
    best = sims.max(axis=1)
    small, _ = outcomes(gsm)
    print("\n| best pool similarity | requests | small model right |\n| --- | --- | --- |")
    for lo, hi in ((0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 1.01)):
        m = (best >= lo) & (best < hi)
        if m.any():
            print(f"| [{lo}, {min(hi, 1.0)}) | {m.sum()} | {small[m].mean():.1%} |")


def print_summary(per_seed: dict[int, list[tuple[str, RoutingQuality]]]) -> None:
    seeds = sorted(per_seed)
    print(f"\n### MMLU held-out over {len(seeds)} splits (seeds {', '.join(map(str, seeds))})\n")
    print("| router | APGR mean ± sd [min, max] | CPT(50%) mean ± sd | CPT(80%) mean ± sd |")
    print("| --- | --- | --- | --- |")
    for i, (name, _) in enumerate(per_seed[seeds[0]]):
        qs = [per_seed[s][i][1] for s in seeds]
        apgr = np.array([q.apgr for q in qs])
        c50 = 100 * np.array([q.cpt50 for q in qs])
        c80 = 100 * np.array([q.cpt80 for q in qs])
        print(
            f"| {name} | {apgr.mean():.3f} ± {apgr.std():.3f} [{apgr.min():.3f}, {apgr.max():.3f}] "
            f"| {c50.mean():.1f}% ± {c50.std():.1f} | {c80.mean():.1f}% ± {c80.std():.1f} |"
        )


def mmlu_split(
    rows: Sequence[dict[str, object]],
    records: Sequence[RouteRecord],
    vectors: np.ndarray,
    seed: int,
    memory_dims: int = FitParams.memory_dims,
) -> tuple[FitResult, list[RouteFeatures], dict[str, np.ndarray], list[tuple[str, RoutingQuality]]]:
    """Fit on one half of a per-subject split, score the other half; prints its table."""
    train = split_by_subject(rows, seed)
    tr_idx, te_idx = np.flatnonzero(train), np.flatnonzero(~train)
    tr_rec = [records[int(i)] for i in tr_idx]
    te_rec = [records[int(i)] for i in te_idx]
    t0 = time.perf_counter()
    params = FitParams(seed=seed, memory_dims=memory_dims)
    fit = fit_model(arrays_from_records(tr_rec, vectors[tr_idx]), params)
    fit_s = time.perf_counter() - t0
    te_feats = features(te_rec, vectors[te_idx])
    small, large = outcomes(te_rec)
    scores = {
        kind: np.array(router_from_model(fit.model, RouterConfig(kind=kind)).score_batch(te_feats))
        for kind in KINDS
    }
    print(
        f"\nMMLU seed {seed}: {len(tr_rec)} train / {len(te_rec)} held-out rows, split 50/50 "
        f"per subject; fit {fit_s:.1f} s"
    )
    print(f"held-out: small right {small.mean():.3f}, large right {large.mean():.3f}")
    quality = quality_rows(scores, small, large, seed)
    print_quality(f"MMLU held-out, seed {seed}", quality, len(te_rec))
    return fit, te_feats, scores, quality


def judge_report() -> None:
    """How well the sampled judge's verdict (small answer vs large answer) labels the
    small model, on GSM8K's recorded Mixtral/GPT-4 answers, against the graded outcome."""
    rows = [json.loads(line) for line in (DATA / "gsm8k_dev.jsonl").open()]
    truth = np.array([bool(r["weak_correct"]) for r in rows])
    print("\n### Judge verdicts vs graded small-model outcome (GSM8K, recorded answers)\n")
    print(f"small model right on {truth.mean():.1%} of {len(rows)} prompts.\n")
    print("| judge method | verdict = graded | P(right \\| judged ok) | P(judged ok \\| right) |")
    print("| --- | --- | --- | --- |")
    for method in ("exact", "normalised", "numeric"):
        config = JudgeConfig(method=method)
        ok = np.array(
            [
                compare(config, str(r["weak_response"]), str(r["strong_response"])).small_ok
                for r in rows
            ]
        )
        precision = truth[ok].mean() if ok.any() else float("nan")
        print(
            f"| {method} | {np.mean(ok == truth):.1%} | {precision:.1%} | {ok[truth].mean():.1%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seeds", default="0,1,2,3,4", help="comma-separated split seeds (default 0,1,2,3,4)"
    )
    parser.add_argument("--skip-gsm8k", action="store_true")
    parser.add_argument(
        "--memory-dims",
        type=int,
        default=FitParams.memory_dims,
        help="kNN memory width after projection (0: the full vector; default %(default)s)",
    )
    parser.add_argument("--examples", action="store_true", help="also report IC example selection")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        parser.error("--seeds needs at least one seed")
    seed = seeds[0]
    params = FitParams(seed=seed, memory_dims=args.memory_dims)

    rows, records = load("mmlu_dev.jsonl")
    vectors = embed_texts([r.prompt for r in records])
    per_seed: dict[int, list[tuple[str, RoutingQuality]]] = {}
    first: tuple[FitResult, list[RouteFeatures], dict[str, np.ndarray]] | None = None
    for s in seeds:
        fit_s, feats_s, scores_s, per_seed[s] = mmlu_split(
            rows, records, vectors, s, args.memory_dims
        )
        if first is None:
            first = (fit_s, feats_s, scores_s)
    assert first is not None
    fit, te_feats, scores = first
    print_summary(per_seed)

    print(f"\n### Calibration (seed {seed}): target large share vs achieved on held-out\n")
    print(
        "| target | from training OOF scores | from half the held-out traffic, on the other half |"
    )
    print("| --- | --- | --- |")
    blend = scores["blend"]
    half = np.random.default_rng(seed + 1).permutation(blend.size) < blend.size // 2
    for target in (0.2, 0.3, 0.5):
        t_oof = calibrate_threshold(fit.oof_scores["blend"].tolist(), target)
        t_log = calibrate_threshold(blend[half].tolist(), target)
        a = large_share_at(blend.tolist(), t_oof)
        b = large_share_at(blend[~half].tolist(), t_log)
        print(
            f"| {target:.0%} | {a:.1%} ({100 * (a - target):+.1f} pt) | {b:.1%} ({100 * (b - target):+.1f} pt) |"
        )

    latency(te_feats, fit.model)

    if args.skip_gsm8k:
        return
    judge_report()
    _, gsm = load("gsm8k_dev.jsonl")
    gsm_vectors = embed_texts([r.prompt for r in gsm])
    full = fit_model(arrays_from_records(records, vectors), params)
    gsm_feats = features(gsm, gsm_vectors)
    g_small, g_large = outcomes(gsm)
    g_scores = {
        kind: np.array(
            router_from_model(full.model, RouterConfig(kind=kind)).score_batch(gsm_feats)
        )
        for kind in KINDS
    }
    print(f"\nGSM8K: small right {g_small.mean():.3f}, large right {g_large.mean():.3f}")
    if args.examples:
        examples_report(gsm, gsm_vectors)
    print_quality(
        "Cross-benchmark: fitted on all MMLU, scored on GSM8K",
        quality_rows(g_scores, g_small, g_large, seed),
        len(gsm),
    )


if __name__ == "__main__":
    main()
