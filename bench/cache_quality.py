"""Cache quality: how often a semantic cache answers, and how often wrongly.

Three views, same MiniLM int8 vectors for every method:

1. QQP held-out pairs (the 30 % of ``qqp_dev.jsonl`` that
   ``scripts/train_equivalence.py`` did not fit on): precision, recall and
   false-hit rate (share of non-duplicates served) against the threshold, for
   cosine alone, GPTCache's decision rule, and cosine + the equivalence check.
2. GPTCache's mock pairs (999 sentence/paraphrase positives). Negatives are
   hard: each origin paired with the paraphrase of another item nearest to it
   by cosine, one per origin (999), skipping items whose origin is a near twin
   (cosine >= 0.8) of this origin, since the set repeats statements.
3. End to end, as GPTCache's own benchmark does: cache the origins, ask the
   paraphrases. GPTCache 0.1.44 runs for real (sqlite + faiss + its
   ``SearchDistanceEvaluation``, like its README benchmark, with our MiniLM
   vectors as its embedding function). Two set-ups: all 999 origins cached
   (GPTCache's README set-up), and a seeded half cached, so that the other
   half of the questions have no right answer and every hit on them is false.
   cachegate: exact top-5 by cosine above a floor (the HNSW tier returns the
   same at this size); the first candidate the check accepts is the hit.

Run from the repository root (about 2-4 minutes on 2 cores once vectors are
cached):  .venv/bin/python -m bench.cache_quality
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.embcache import SHARED_DATA, embed_texts
from cache.equivalence import EquivalenceChecker
from cache.equivalence_text import signature
from scripts.train_equivalence import auc, load_qqp, qqp_split, qqp_vectors, recall_at_precision

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

COSINE_GRID = (0.70, 0.80, 0.85, 0.90, 0.95)
GPTCACHE_GRID = (0.80, 0.90, 0.95)  # its Config(similarity_threshold=...)
SCORE_GRID = (0.3, 0.5, 0.7, 0.9)
TOP_K = 5
TWIN = 0.8


def machine() -> str:
    cpu = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs (nproc), {cpu}, Python {platform.python_version()}"


def gptcache_rule(cosines: F64, threshold: float) -> Bools:
    """GPTCache's hit decision on one pair, computed by its own evaluator.

    Its L2 vector stores return squared L2 distance (2 - 2 cos for unit
    vectors); ``SearchDistanceEvaluation`` turns it into 4 - d, and the
    adapter serves when that rank >= (max - min) * similarity_threshold.
    """
    from gptcache.similarity_evaluation import SearchDistanceEvaluation

    evaluation = SearchDistanceEvaluation()
    low, high = evaluation.range()
    rank_threshold = (high - low) * threshold
    ranks = [evaluation.evaluation({}, {"search_result": (2 - 2 * c, None)}) for c in cosines]
    return np.asarray(ranks) >= rank_threshold


def checker_scores(
    checker: EquivalenceChecker, a: Sequence[str], va: F32, b: Sequence[str], vb: F32
) -> tuple[F64, Bools, F64, F64]:
    """Score and veto of every pair, and each check's wall and CPU time in µs.

    Texts are parsed cold (the signature memo is cleared before each check),
    the worst case for a candidate; CPU time leaves out time the process
    spent descheduled on this shared machine.
    """
    scores, vetoed = np.zeros(len(a)), np.zeros(len(a), dtype=bool)
    wall, cpu = np.zeros(len(a)), np.zeros(len(a))
    for i in range(len(a)):
        signature.cache_clear()
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        verdict = checker.check(a[i], va[i], b[i], vb[i], threshold=0.0)
        cpu[i] = (time.thread_time_ns() - start_cpu) / 1e3
        wall[i] = (time.perf_counter_ns() - start) / 1e3
        scores[i], vetoed[i] = verdict.score, verdict.reason.startswith("hard_mismatch")
    return scores, vetoed, wall, cpu


def row(name: str, served: Bools, labels: Bools) -> str:
    tp, fp = int((served & labels).sum()), int((served & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall, false_hits = tp / labels.sum(), fp / (~labels).sum()
    return f"| {name:40s} | {precision:9.3f} | {recall:6.3f} | {false_hits:14.4f} |"


def pair_tables(
    title: str, cos: F64, scores: F64, vetoed: Bools, labels: Bools, default: float
) -> None:
    print(f"\n### {title}: {labels.sum()} positives, {(~labels).sum()} negatives\n")
    print(f"| {'method, threshold':40s} | precision | recall | false-hit rate |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 8}|{'-' * 16}|")
    for t in COSINE_GRID:
        print(row(f"cosine >= {t:.2f}", cos >= t, labels))
    for t in GPTCACHE_GRID:
        print(row(f"GPTCache SearchDistance t={t:.2f}", gptcache_rule(cos, t), labels))
    for t in (0.80, 0.85, 0.90):
        print(row(f"cosine >= {t:.2f} + vetoes", (cos >= t) & ~vetoed, labels))
        print(row(f"cosine >= {t:.2f} + check >= 0.5", (cos >= t) & (scores >= 0.5), labels))
    for t in sorted({*SCORE_GRID, default}):
        tag = " (default)" if t == default else ""
        print(row(f"check alone >= {t:.3f}{tag}", scores >= t, labels))
    print(
        f"\nROC AUC: cosine {auc(cos, labels):.4f}, check {auc(scores, labels):.4f}; "
        f"recall at precision 0.90 (threshold picked on these pairs, an upper bound): "
        f"cosine {recall_at_precision(cos, labels, 0.9):.3f}, "
        f"check {recall_at_precision(scores, labels, 0.9):.3f}"
    )
    kinds = f"{vetoed[labels].sum()} of {labels.sum()} positives, {vetoed[~labels].sum()} negatives"
    print(f"vetoed: {kinds}")


def qqp(checker: EquivalenceChecker) -> None:
    a, b, labels = load_qqp()
    va, vb = qqp_vectors(a, b)
    _, held = qqp_split(len(a))
    ha, hb = [a[i] for i in held], [b[i] for i in held]
    cos = np.einsum("ij,ij->i", va[held], vb[held]).astype(np.float64)
    scores, vetoed, wall, cpu = checker_scores(checker, ha, va[held], hb, vb[held])
    title = "QQP held-out pairs"
    pair_tables(title, cos, scores, vetoed, labels[held], checker.default_threshold)
    (w50, w99), (c50, c99) = np.percentile(wall, [50, 99]), np.percentile(cpu, [50, 99])
    print(
        f"\nper-candidate check over {len(held)} pairs, both texts parsed cold: "
        f"wall p50 {w50:.0f} µs, p99 {w99:.0f} µs; CPU p50 {c50:.0f} µs, p99 {c99:.0f} µs "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


def mock_pairs() -> tuple[list[str], list[str], F32, F32]:
    with open(SHARED_DATA / "cache" / "gptcache_mock_pairs.json") as f:
        items = json.load(f)
    origins, similars = [it["origin"] for it in items], [it["similar"] for it in items]
    vecs = embed_texts(origins + similars)
    return origins, similars, vecs[: len(items)], vecs[len(items) :]


def mock(checker: EquivalenceChecker) -> None:
    origins, similars, vo, vs = mock_pairs()
    n = len(origins)
    sim = vo @ vs.T
    np.fill_diagonal(sim, -2.0)
    # The mock set repeats statements (590 of 999 origins have a twin origin at
    # cosine >= 0.8); a twin's paraphrase is a true positive, so twins are skipped.
    sim[vo @ vo.T >= TWIN] = -2.0
    hard = sim.argmax(1)  # the nearest paraphrase of another, non-twin item
    a = origins + origins
    b = similars + [similars[j] for j in hard]
    va, vb = np.concatenate([vo, vo]), np.concatenate([vs, vs[hard]])
    labels = np.arange(2 * n) < n
    cos = np.einsum("ij,ij->i", va, vb).astype(np.float64)
    scores, vetoed, _, _ = checker_scores(checker, a, va, b, vb)
    title = "GPTCache mock pairs (hard negatives)"
    pair_tables(title, cos, scores, vetoed, labels, checker.default_threshold)


Lookup = Callable[[int], int | None]


def outcomes(name: str, lookup: Lookup, cached: Bools) -> str:
    answers = [lookup(i) for i in range(len(cached))]
    right = sum(1 for i, a in enumerate(answers) if cached[i] and a == i)
    wrong_c = sum(1 for i, a in enumerate(answers) if cached[i] and a is not None and a != i)
    wrong_u = sum(1 for i, a in enumerate(answers) if not cached[i] and a is not None)
    miss = sum(1 for a in answers if a is None)
    return f"| {name:44s} | {right:7d} | {wrong_c:9d} | {wrong_u:9d} | {miss:6d} |"


def gptcache_lookup(
    origins: list[str],
    similars: list[str],
    vo: F32,
    vs: F32,
    cached: Bools,
    threshold: float,
    workdir: str,
) -> Lookup:
    from gptcache import Cache, Config
    from gptcache.adapter.api import get, put
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation import SearchDistanceEvaluation

    vectors = {t: v for t, v in zip(origins, vo, strict=True)}
    vectors |= {t: v for t, v in zip(similars, vs, strict=True)}
    data = get_data_manager(
        CacheBase("sqlite", sql_url=f"sqlite:///{workdir}/gptcache.db"),
        VectorBase("faiss", dimension=vo.shape[1], index_path=f"{workdir}/faiss.index"),
        max_size=10_000,
    )
    cache = Cache()
    cache.init(
        pre_embedding_func=get_prompt,
        embedding_func=lambda text, **_: vectors[text],
        data_manager=data,
        similarity_evaluation=SearchDistanceEvaluation(),
        config=Config(similarity_threshold=threshold),
    )
    for i in np.flatnonzero(cached):
        put(origins[i], str(i), cache_obj=cache)

    def lookup(i: int) -> int | None:
        answer = get(similars[i], cache_obj=cache)
        return None if answer is None else int(answer)

    return lookup


def cachegate_lookup(
    checker: EquivalenceChecker,
    origins: list[str],
    similars: list[str],
    vo: F32,
    vs: F32,
    cached: Bools,
    floor: float,
    threshold: float | None,
) -> Lookup:
    ids = np.flatnonzero(cached)

    def lookup(i: int) -> int | None:
        cos = vo[ids] @ vs[i]
        for j in np.argsort(-cos)[:TOP_K]:
            if cos[j] < floor:
                break
            c = int(ids[j])
            if checker.check(similars[i], vs[i], origins[c], vo[c], threshold).equivalent:
                return c
        return None

    return lookup


def end_to_end(checker: EquivalenceChecker) -> None:
    origins, similars, vo, vs = mock_pairs()
    n = len(origins)
    half = np.zeros(n, dtype=bool)
    half[np.random.default_rng(7).permutation(n)[: n // 2]] = True
    for label, cached in (("all 999 origins cached", np.ones(n, bool)), ("half cached", half)):
        print(f"\n### End to end, {label}; the 999 paraphrases asked\n")
        print(
            "wrong: another item served for a cached question; false: any hit for an uncached one\n"
        )
        print(f"| {'method':44s} | correct | wrong hit | false hit | misses |")
        print(f"|{'-' * 46}|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 8}|")
        for t in (0.95, 0.80):
            workdir = tempfile.mkdtemp(prefix="gptcache-")
            # GPTCache flushes its faiss index at exit; atexit runs last-in
            # first-out, so registering the removal first makes it run after.
            atexit.register(shutil.rmtree, workdir, True)
            lookup = gptcache_lookup(origins, similars, vo, vs, cached, t, workdir)
            print(outcomes(f"GPTCache 0.1.44, threshold {t:.2f}", lookup, cached))
        for floor, t in ((0.5, None), (0.5, 0.5), (0.9, 0.0), (0.9, 0.5), (0.85, 0.5)):
            shown = f"{checker.default_threshold:.3f}" if t is None else f"{t:.2f}"
            lookup = cachegate_lookup(checker, origins, similars, vo, vs, cached, floor, t)
            print(outcomes(f"cachegate cos >= {floor:.2f}, check >= {shown}", lookup, cached))


def main() -> None:
    started = time.time()
    print(f"machine: {machine()}")
    checker = EquivalenceChecker.load_default()
    print(f"equivalence artifact: default threshold {checker.default_threshold:.4f}")
    qqp(checker)
    mock(checker)
    end_to_end(checker)
    print(f"\nbench ran in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
