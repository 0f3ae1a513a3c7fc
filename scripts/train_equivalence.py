"""Fit the equivalence scorer and write ``cache/data/equivalence.npz``.

Data: ``../shared/data/cache/qqp_dev.jsonl`` (Quora Question Pairs, 24,000
labelled pairs). Split: a permutation of the pair indices drawn with
``numpy.random.default_rng(SPLIT_SEED)``; its first 70 % is the fit part, the
rest is held out and only scored (``bench/cache_quality.py`` uses the same
split).

Stages, all fitted on the fit part only:

1. Hashed word tables (``2**IDF_BITS`` float16 buckets) from text that is not
   Quora's (Quora's terms forbid shipping vocabulary derived from it): the
   labelled category queries, the router prompts, GPTCache's mock pairs and
   the chit-chat paraphrases under ``../shared/data``. IDF, and the share of a
   word's mid-sentence uses that are capitalised (in texts that use case): with
   rarity, what tells the lower-cased name veto that "paris" names a thing.
2. The embedding network (one hidden layer, numpy), 5-fold out-of-fold logits
   and a refit on the whole fit part.
3. The adapter: a linear map of the embeddings (128 x 384) fitted so that the
   cosine of the mapped vectors separates duplicates (logistic loss, Adam),
   out-of-fold on the same folds, then refitted.
4. LightGBM trees (fitting only; evaluated in numpy at run time) over the
   lexical features, the adapted cosine and the network's logit, out-of-fold on the same folds;
   Platt calibration and the default threshold (the highest recall with
   precision >= 0.90 over *all* fit pairs, hard-vetoed ones counted as
   rejections) come from those out-of-fold scores, then a refit.

Run from the repository root (needs the ``train`` extra, i.e. lightgbm):
    .venv/bin/python -m scripts.train_equivalence
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.embcache import SHARED_DATA, embed_texts
from cache.equivalence import ARTIFACT, EquivalenceChecker
from cache.equivalence_features import (
    LEXICAL_NAMES,
    TREE_NAMES,
    adapted_cosine,
    lexical_features,
    network_features,
    tree_features,
)
from cache.equivalence_text import (
    IDF_BITS,
    RARE_DOCS,
    Lexicon,
    hard_mismatch,
    idf_bucket,
    signature,
)
from cache.equivalence_trees import Forest

SPLIT_SEED = 20261123
FIT_FRACTION = 0.7
TARGET_PRECISION = 0.90
FOLDS = 5
# The network's size, decay and epochs were picked by out-of-fold AUC over a
# grid of (0 | 64 hidden, 1e-2 | 3e-2 decay, 1-8 epochs) when it was the
# whole scorer; the trees now do the rest, so it is no longer searched.
HIDDEN, DECAY, EPOCHS = 64, 1e-2, 7
BATCH = 256
TREE_DEPTH = 6
TREE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "max_depth": TREE_DEPTH,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 2,
    "seed": 0,
    "deterministic": True,
}
# The adapter: a linear map of the embeddings whose cosine is a feature of the trees.
ADAPTER_DIM, ADAPTER_EPOCHS, ADAPTER_LR, ADAPTER_DECAY = 128, 30, 3e-3, 1e-4
TREE_ROUNDS = 200  # out-of-fold AUC peaks near 200 rounds at this rate (0.9227 vs 0.9215 at 400)
OUT = Path(__file__).resolve().parent.parent / "cache" / "data"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def load_qqp() -> tuple[list[str], list[str], npt.NDArray[np.bool_]]:
    with open(SHARED_DATA / "cache" / "qqp_dev.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return [r["a"] for r in rows], [r["b"] for r in rows], np.array([r["duplicate"] for r in rows])


def qqp_split(n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(fit indices, held-out indices) of the n QQP pairs."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = int(FIT_FRACTION * n)
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def qqp_vectors(a: list[str], b: list[str]) -> tuple[F32, F32]:
    vecs = embed_texts(a + b)  # one list, so the disk cache is shared with the bench
    return vecs[: len(a)], vecs[len(a) :]


def auc(scores: F64, labels: npt.NDArray[np.bool_]) -> float:
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties (vetoed pairs all score 0).
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    pos = labels.sum()
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def best_threshold(scores: F64, labels: npt.NDArray[np.bool_], precision: float) -> float:
    """Lowest threshold whose precision is >= ``precision`` (so the highest recall)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    prec = tp / np.arange(1, len(y) + 1)
    last_of_value = np.r_[s[1:] != s[:-1], True]  # a threshold keeps all ties
    ok = np.flatnonzero(last_of_value & (prec >= precision) & (s > 0))
    return float(s[ok[-1]]) if len(ok) else 1.0


def recall_at_precision(scores: F64, labels: npt.NDArray[np.bool_], precision: float) -> float:
    t = best_threshold(scores, labels, precision)
    return float((labels & (scores >= t)).sum() / labels.sum())


class Net:
    """A one-hidden-layer ReLU network (or logistic regression when hidden == 0)."""

    def __init__(self, dim: int, hidden: int, decay: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.hidden, self.decay = hidden, decay
        width = hidden or dim
        self.w1 = (rng.standard_normal((hidden, dim)) * np.sqrt(2 / dim)).astype(np.float32)
        self.b1 = np.zeros(hidden, np.float32)
        self.w2 = (rng.standard_normal(width) * np.sqrt(1 / width)).astype(np.float32)
        self.b2 = np.float32(0.0)
        self.params = [self.w1, self.b1, self.w2] if hidden else [self.w2]
        self.m = [np.zeros_like(p) for p in self.params] + [np.float32(0)]
        self.v = [np.zeros_like(p) for p in self.params] + [np.float32(0)]
        self.t = 0

    def logits(self, x: F32) -> F32:
        h = np.maximum(x @ self.w1.T + self.b1, 0) if self.hidden else x
        return h @ self.w2 + self.b2  # type: ignore[no-any-return]

    def step(self, x: F32, y: F32, lr: float = 1e-3) -> None:
        h = np.maximum(x @ self.w1.T + self.b1, 0) if self.hidden else x
        p = 1 / (1 + np.exp(-np.clip(h @ self.w2 + self.b2, -30, 30)))
        g = (p - y) / len(y)
        grads = []
        if self.hidden:
            gh = np.outer(g, self.w2) * (h > 0)
            grads += [gh.T @ x + self.decay * self.w1, gh.sum(0)]
        grads += [h.T @ g + self.decay * self.w2, np.float32(g.sum())]
        self.t += 1
        for i, grad in enumerate(grads):
            self.m[i] = 0.9 * self.m[i] + 0.1 * grad
            self.v[i] = 0.999 * self.v[i] + 0.001 * grad * grad
            upd = (
                lr
                * (self.m[i] / (1 - 0.9**self.t))
                / (np.sqrt(self.v[i] / (1 - 0.999**self.t)) + 1e-8)
            )
            if i < len(self.params):
                self.params[i] -= upd.astype(np.float32)
            else:
                self.b2 = np.float32(self.b2 - upd)


def train(x: F32, y: F32, hidden: int, decay: float, epochs: int, seed: int = 0) -> Net:
    net = Net(x.shape[1], hidden, decay, seed)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH):
            idx = order[start : start + BATCH]
            net.step(x[idx], y[idx])
    return net


def standardise(x: F32) -> tuple[F32, F32]:
    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    return mean.astype(np.float32), scale.astype(np.float32)


def platt(logits: F64, y: F64) -> tuple[float, float]:
    logits = np.clip(logits, -30, 30)
    a, b = 1.0, 0.0
    for _ in range(50):  # Newton's method on the 2-parameter logistic loss
        p = 1 / (1 + np.exp(-(a * logits + b)))
        w = p * (1 - p) + 1e-9
        grad = np.array([((p - y) * logits).sum(), (p - y).sum()])
        hess = np.array(
            [[(w * logits * logits).sum(), (w * logits).sum()], [(w * logits).sum(), w.sum()]]
        ) + 1e-6 * np.eye(2)
        a, b = np.array([a, b]) - np.linalg.solve(hess, grad)
    return float(a), float(b)


_WORD = re.compile(r"[^\W\d_]+|[.?!:;\n\"(]")


def reference_texts() -> list[str]:
    """The non-Quora texts the word tables are counted on."""
    docs: list[str] = []
    with open(SHARED_DATA / "categories" / "labeled_queries_dev.jsonl") as f:
        docs += [json.loads(line)["text"] for line in f]
    for path in sorted((SHARED_DATA / "router").glob("*.jsonl")):
        with open(path) as f:
            rows = [json.loads(line) for line in f]
        docs += [r.get("prompt") or r["question"] for r in rows]
    with open(SHARED_DATA / "cache" / "gptcache_mock_pairs.json") as f:
        docs += [t for r in json.load(f) for t in (r["origin"], r["similar"])]
    with open(SHARED_DATA / "cache" / "chitchat_paraphrase_groups_dev.jsonl") as f:
        docs += [q for line in f for q in json.loads(line)["questions"]]
    return docs


def word_tables(docs: list[str]) -> tuple[npt.NDArray[np.float16], npt.NDArray[np.float16], float]:
    """(IDF, capitalised share, IDF of a word in RARE_DOCS texts) per hashed word.

    IDF: smoothed log inverse document frequency. Capitalised share: of a word's uses
    that do not open a sentence, in texts that use case at all (many query sets are
    lower-cased throughout and say nothing about names), the share written with a
    capital; 0 for words seen capitalised fewer than twice.
    """
    rows = 1 << IDF_BITS
    df, capital, uses = np.zeros(rows), np.zeros(rows), np.zeros(rows)
    for doc in docs:
        for bucket in {idf_bucket(w) for w in signature(doc).tokens if w.isalnum()}:
            df[bucket] += 1
        if not any(c.isupper() for c in doc[1:]):
            continue
        words = _WORD.findall(doc)
        for i, word in enumerate(words):
            if word[0].isalpha() and i > 0 and words[i - 1][0].isalpha():
                bucket = idf_bucket(word.lower())
                uses[bucket] += 1
                capital[bucket] += word[0].isupper()
    proper = np.where(capital >= 2, capital / np.maximum(uses, 1), 0.0)
    print(
        f"word tables from {len(docs)} non-Quora texts, {(df > 0).mean():.0%} buckets seen, "
        f"{(proper >= 0.5).sum()} written like names"
    )
    idf = np.log((len(docs) + 1) / (df + 1)).astype(np.float16)
    rare_idf = float(np.float16(np.log((len(docs) + 1) / (RARE_DOCS + 1))))
    return idf, proper.astype(np.float16), rare_idf


def fit_adapter(u: F32, v: F32, y: F32, seed: int = 0) -> F32:
    """A linear map P (ADAPTER_DIM x dim) such that cos(Pu, Pv) separates duplicates.

    Logistic loss on ``a * cos(Pu, Pv) + b`` by Adam, P started at the first
    ADAPTER_DIM coordinates (plus noise), so it starts as a truncated raw cosine.
    """
    rng = np.random.default_rng(seed)
    dim = u.shape[1]
    p = (np.eye(dim)[:ADAPTER_DIM] + 0.01 * rng.standard_normal((ADAPTER_DIM, dim))).astype(
        np.float32
    )
    ab = np.array([10.0, -8.0], np.float32)
    params = [p, ab]
    m = [np.zeros_like(x) for x in params]
    s = [np.zeros_like(x) for x in params]
    t = 0
    for _ in range(ADAPTER_EPOCHS):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH):
            i = order[start : start + BATCH]
            pu, pv = u[i] @ p.T, v[i] @ p.T
            nu = np.linalg.norm(pu, axis=1) + 1e-9
            nv = np.linalg.norm(pv, axis=1) + 1e-9
            c = (pu * pv).sum(1) / (nu * nv)
            prob = 1 / (1 + np.exp(-np.clip(ab[0] * c + ab[1], -30, 30)))
            g = (prob - y[i]) / len(i)
            gc = (g * ab[0])[:, None]
            gpu = gc * (pv / (nu * nv)[:, None] - c[:, None] * pu / (nu**2)[:, None])
            gpv = gc * (pu / (nu * nv)[:, None] - c[:, None] * pv / (nv**2)[:, None])
            grads = [
                gpu.T @ u[i] + gpv.T @ v[i] + ADAPTER_DECAY * p,
                np.array([(g * c).sum(), g.sum()], np.float32),
            ]
            t += 1
            for j, grad in enumerate(grads):
                m[j] = 0.9 * m[j] + 0.1 * grad
                s[j] = 0.999 * s[j] + 0.001 * grad * grad
                step = ADAPTER_LR * (m[j] / (1 - 0.9**t)) / (np.sqrt(s[j] / (1 - 0.999**t)) + 1e-8)
                params[j] -= step.astype(np.float32)
    return p


def export_forest(booster: Any, depth: int) -> Forest:
    """LightGBM trees as complete heap-ordered arrays (see :mod:`cache.equivalence_trees`)."""
    trees = booster.dump_model()["tree_info"]
    inner = 2**depth - 1
    feature = np.zeros((len(trees), inner), np.int16)
    threshold = np.full((len(trees), inner), np.inf)  # padding always goes left
    leaf = np.zeros((len(trees), inner + 1))

    def fill(t: int, node: dict[str, Any], at: int, level: int) -> None:
        if "leaf_value" in node:  # copy to every padded leaf under ``at``
            first = at
            for _ in range(depth - level):
                first = 2 * first + 1
            width = 2 ** (depth - level)
            leaf[t, first - inner : first - inner + width] = node["leaf_value"]
            return
        if node["decision_type"] != "<=" or level >= depth:
            raise ValueError(f"unsupported split in tree {t}: {node['decision_type']}")
        feature[t, at], threshold[t, at] = node["split_feature"], node["threshold"]
        fill(t, node["left_child"], 2 * at + 1, level + 1)
        fill(t, node["right_child"], 2 * at + 2, level + 1)

    for t, tree in enumerate(trees):
        fill(t, tree["tree_structure"], 0, 0)
    return Forest(feature=feature, threshold=threshold, leaf=leaf, depth=depth)


def fit_trees(x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> Any:
    import lightgbm  # fitting-time only (the ``train`` extra); run time evaluates numpy arrays

    data = lightgbm.Dataset(x, y.astype(np.float64), free_raw_data=False)
    return lightgbm.train(TREE_PARAMS, data, TREE_ROUNDS)


def main() -> None:
    started = time.time()
    a, b, labels = load_qqp()
    va, vb = qqp_vectors(a, b)
    fit, held = qqp_split(len(a))
    idf, proper, rare_idf = word_tables(reference_texts())
    lexicon = Lexicon(idf.astype(np.float32), proper.astype(np.float32), rare_idf)
    sigs = [(signature(x), signature(y)) for x, y in zip(a, b, strict=True)]
    veto = np.array([hard_mismatch(sa, sb, lexicon) or "" for sa, sb in sigs])
    lexical = [lexical_features(sa, sb, float(va[i] @ vb[i])) for i, (sa, sb) in enumerate(sigs)]
    feats = np.stack([network_features(lex, va[i], vb[i]) for i, lex in enumerate(lexical)])
    y = labels.astype(np.float32)
    print(f"features in {time.time() - started:.0f} s")

    dup = labels
    print("hard vetoes on QQP duplicates (all 24,000 pairs; share of the 9,079 duplicates):")
    for kind, n in Counter(veto[dup]).most_common():
        if kind:
            non = int(((veto == kind) & ~dup).sum())
            print(f"  {kind:9s} rejects {n:4d} duplicates ({n / dup.sum():.2%}), {non} non-dup")

    # Stage 2: the network, out-of-fold on the fit part, then refitted on all of it.
    folds = np.random.default_rng(1).integers(0, FOLDS, len(fit))
    network_logit = np.zeros(len(a))
    for k in range(FOLDS):
        tr, te = fit[folds != k], fit[folds == k]
        mean, scale = standardise(feats[tr])
        net = train((feats[tr] - mean) / scale, y[tr], HIDDEN, DECAY, EPOCHS, seed=k)
        network_logit[te] = net.logits((feats[te] - mean) / scale)
    mean, scale = standardise(feats[fit])
    net = train((feats[fit] - mean) / scale, y[fit], HIDDEN, DECAY, EPOCHS)
    network_logit[held] = net.logits((feats[held] - mean) / scale)
    print(
        f"network OOF AUC {auc(network_logit[fit], labels[fit]):.4f} ({time.time() - started:.0f} s)"
    )

    # Stage 3: the adapter (a metric on the embeddings), out-of-fold on the same folds.
    adapted = np.zeros(len(a))
    for k in range(FOLDS):
        tr, te = fit[folds != k], fit[folds == k]
        p = fit_adapter(va[tr], vb[tr], y[tr], seed=k)
        adapted[te] = [adapted_cosine(p, va[i], vb[i]) for i in te]
    adapter = fit_adapter(va[fit], vb[fit], y[fit])
    adapted[held] = [adapted_cosine(adapter, va[i], vb[i]) for i in held]
    print(f"adapter OOF AUC {auc(adapted[fit], labels[fit]):.4f} ({time.time() - started:.0f} s)")

    # Stage 4: trees over lexical features, the adapted cosine and the network logit.
    x = np.stack(
        [
            tree_features(sa, sb, lexical[i], lexicon, float(adapted[i]), float(network_logit[i]))
            for i, (sa, sb) in enumerate(sigs)
        ]
    )
    oof_raw = np.zeros(len(fit))
    for k in range(FOLDS):
        booster = fit_trees(x[fit[folds != k]], labels[fit[folds != k]])
        oof_raw[folds == k] = booster.predict(x[fit[folds == k]], raw_score=True)
    pa, pb = platt(oof_raw, y[fit].astype(np.float64))
    oof_scores = np.where(
        veto[fit] == "", 1 / (1 + np.exp(-np.clip(pa * oof_raw + pb, -30, 30))), 0.0
    )
    threshold = best_threshold(oof_scores, labels[fit], TARGET_PRECISION)
    print(
        f"trees OOF AUC {auc(oof_raw, labels[fit]):.4f} alone, {auc(oof_scores, labels[fit]):.4f} "
        f"with hard vetoes; recall at precision 0.90 "
        f"{recall_at_precision(oof_raw, labels[fit], 0.9):.3f} / "
        f"{recall_at_precision(oof_scores, labels[fit], 0.9):.3f}; Platt a={pa:.3f} b={pb:.3f}"
    )
    print(f"default threshold {threshold:.4f} (OOF precision >= {TARGET_PRECISION} on fit part)")

    booster = fit_trees(x[fit], labels[fit])
    forest = export_forest(booster, TREE_DEPTH)
    raw = np.array([forest.raw_score(row) for row in x[held]])
    gap = float(np.abs(raw - booster.predict(x[held], raw_score=True)).max())
    assert gap < 1e-6, f"numpy trees disagree with LightGBM by {gap}"
    model_alone = 1 / (1 + np.exp(-np.clip(pa * raw + pb, -30, 30)))
    scores = np.where(veto[held] == "", model_alone, 0.0)
    yh = labels[held]
    cos = np.einsum("ij,ij->i", va[held], vb[held]).astype(np.float64)
    at_default = scores >= threshold
    metrics = {
        "held_out_pairs": len(held),
        "cosine_auc": auc(cos, yh),
        "cosine_recall_at_p90": recall_at_precision(cos, yh, 0.9),
        "network_alone_auc": auc(network_logit[held], yh),
        "model_alone_auc": auc(model_alone, yh),  # vetoes ignored: what they cost on QQP labels
        "model_alone_recall_at_p90": recall_at_precision(model_alone, yh, 0.9),
        "checker_auc": auc(scores, yh),
        "checker_recall_at_p90": recall_at_precision(scores, yh, 0.9),
        "default_threshold_precision": float(yh[at_default].mean()),
        "default_threshold_recall": float(at_default[yh].mean()),
        "default_threshold_false_hit_rate": float(at_default[~yh].mean()),
    }
    for name, val in metrics.items():
        print(
            f"held-out {name}: {val:.4f}" if isinstance(val, float) else f"held-out {name}: {val}"
        )

    meta = {
        "dim": int(va.shape[1]),
        "default_threshold": threshold,
        "out_b": float(net.b2),
        "platt_a": pa,
        "platt_b": pb,
        "network_features": [*LEXICAL_NAMES, "abs_diff[384]", "product[384]"],
        "hidden": HIDDEN,
        "weight_decay": DECAY,
        "epochs": EPOCHS,
        "tree_features": list(TREE_NAMES),
        "tree_depth": TREE_DEPTH,
        "tree_rounds": TREE_ROUNDS,
        "tree_params": TREE_PARAMS,
        "idf_bits": IDF_BITS,
        "rare_idf": rare_idf,
        "adapter": {
            "dim": ADAPTER_DIM,
            "epochs": ADAPTER_EPOCHS,
            "lr": ADAPTER_LR,
            "decay": ADAPTER_DECAY,
        },
        "split": {"seed": SPLIT_SEED, "fit_fraction": FIT_FRACTION, "source": "qqp_dev.jsonl"},
        "held_out": metrics,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT / ARTIFACT,
        meta=np.array(json.dumps(meta)),
        mean=mean,
        scale=scale,
        hidden_w=net.w1,
        hidden_b=net.b1,
        out_w=net.w2,
        idf=idf,
        proper=proper,
        adapter=adapter,
        tree_feature=forest.feature,
        tree_threshold=forest.threshold,
        tree_leaf=forest.leaf,
    )
    (OUT / "equivalence.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = (OUT / ARTIFACT).stat().st_size
    checker = EquivalenceChecker.load((OUT / ARTIFACT).read_bytes())
    i = int(held[0])
    again = checker.check(a[i], va[i], b[i], vb[i], threshold=0.0).score
    assert veto[i] != "" or abs(again - scores[0]) < 1e-4, (again, scores[0])
    print(f"wrote {OUT / ARTIFACT} ({size / 1e6:.2f} MB) in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
