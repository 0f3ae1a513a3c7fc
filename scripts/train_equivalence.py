"""Fit the equivalence scorer and write ``cache/data/equivalence.npz``.

Data: ``../shared/data/cache/qqp_dev.jsonl`` (Quora Question Pairs, 24,000
labelled pairs). Split: a permutation of the pair indices drawn with
``numpy.random.default_rng(SPLIT_SEED)``; its first 70 % is the fit part, the
rest is held out and only scored (``bench/cache_quality.py`` uses the same
split). Within the fit part, 5-fold cross-validation picks the network size,
weight decay and epoch count, gives out-of-fold scores on which the Platt
calibration and the default threshold are fitted (the highest recall with
precision >= 0.90 over *all* fit pairs, vetoed ones counted as rejections),
and then the chosen network is refitted on the whole fit part.

Run from the repository root:  .venv/bin/python -m scripts.train_equivalence
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.embcache import SHARED_DATA, embed_texts
from cache.equivalence import ARTIFACT
from cache.equivalence_features import LEXICAL_NAMES, pair_features
from cache.equivalence_text import hard_mismatch, signature

SPLIT_SEED = 20261123
FIT_FRACTION = 0.7
TARGET_PRECISION = 0.90
FOLDS = 5
GRID = [(0, 1e-2), (64, 1e-2), (64, 3e-2)]  # (hidden units, weight decay)
MAX_EPOCHS = 8
BATCH = 256
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


def cross_validate(x: F32, y: F32) -> tuple[int, float, int, F64]:
    """Pick (hidden, decay, epochs) by mean out-of-fold AUC; return them and OOF logits."""
    folds = np.random.default_rng(1).integers(0, FOLDS, len(y))
    best: tuple[float, int, float, int, F64] = (-1.0, 0, 0.0, 0, np.zeros(0))
    for hidden, decay in GRID:
        oof = np.zeros((MAX_EPOCHS, len(y)))
        for k in range(FOLDS):
            tr, te = folds != k, folds == k
            mean, scale = standardise(x[tr])
            xt, xe = (x[tr] - mean) / scale, (x[te] - mean) / scale
            net = Net(x.shape[1], hidden, decay, seed=k)
            rng = np.random.default_rng(k)
            for epoch in range(MAX_EPOCHS):
                order = rng.permutation(len(xt))
                for start in range(0, len(xt), BATCH):
                    idx = order[start : start + BATCH]
                    net.step(xt[idx], y[tr][idx])
                oof[epoch, te] = net.logits(xe)
        aucs = [auc(o, y > 0.5) for o in oof]
        e = int(np.argmax(aucs))
        print(f"hidden={hidden:3d} decay={decay:g}: OOF AUC by epoch {np.round(aucs, 4)}")
        if aucs[e] > best[0]:
            best = (aucs[e], hidden, decay, e + 1, oof[e])
    _, hidden, decay, epochs, logits = best
    return hidden, decay, epochs, logits


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


def main() -> None:
    started = time.time()
    a, b, labels = load_qqp()
    va, vb = qqp_vectors(a, b)
    fit, held = qqp_split(len(a))
    sigs = [(signature(x), signature(y)) for x, y in zip(a, b, strict=True)]
    veto = np.array([hard_mismatch(sa, sb) or "" for sa, sb in sigs])
    feats = np.stack([pair_features(sa, sb, va[i], vb[i]) for i, (sa, sb) in enumerate(sigs)])
    y = labels.astype(np.float32)

    dup = labels
    print("vetoes on QQP duplicates (all 24,000 pairs; share of the 9,079 duplicates):")
    for kind, n in Counter(veto[dup]).most_common():
        if kind:
            non = int(((veto == kind) & ~dup).sum())
            print(f"  {kind:9s} rejects {n:4d} duplicates ({n / dup.sum():.2%}), {non} non-dup")

    train_idx = fit[veto[fit] == ""]
    hidden, decay, epochs, oof_logits = cross_validate(feats[train_idx], y[train_idx])
    pa, pb = platt(oof_logits, y[train_idx].astype(np.float64))
    oof_scores = np.zeros(len(fit))
    oof_scores[veto[fit] == ""] = 1 / (1 + np.exp(-np.clip(pa * oof_logits + pb, -30, 30)))
    threshold = best_threshold(oof_scores, labels[fit], TARGET_PRECISION)
    print(f"chose hidden={hidden} decay={decay:g} epochs={epochs}; Platt a={pa:.3f} b={pb:.3f}")
    print(f"default threshold {threshold:.4f} (OOF precision >= {TARGET_PRECISION} on fit part)")

    mean, scale = standardise(feats[train_idx])
    net = train((feats[train_idx] - mean) / scale, y[train_idx], hidden, decay, epochs)
    logits = net.logits((feats[held] - mean) / scale).astype(np.float64)
    scores = np.where(veto[held] == "", 1 / (1 + np.exp(-np.clip(pa * logits + pb, -30, 30))), 0.0)
    yh = labels[held]
    cos = np.einsum("ij,ij->i", va[held], vb[held]).astype(np.float64)
    at_default = scores >= threshold
    metrics = {
        "held_out_pairs": len(held),
        "cosine_auc": auc(cos, yh),
        "cosine_recall_at_p90": recall_at_precision(cos, yh, 0.9),
        "model_alone_auc": auc(logits, yh),  # vetoes ignored: what they cost on QQP labels
        "checker_auc": auc(scores, yh),
        "checker_recall_at_p90": recall_at_precision(scores, yh, 0.9),
        "default_threshold_precision": float(yh[at_default].mean()),
        "default_threshold_recall": float(at_default[yh].mean()),
        "default_threshold_false_hit_rate": float(at_default[~yh].mean()),
    }
    for k, val in metrics.items():
        print(f"held-out {k}: {val:.4f}" if isinstance(val, float) else f"held-out {k}: {val}")

    meta = {
        "dim": int(va.shape[1]),
        "default_threshold": threshold,
        "out_b": float(net.b2),
        "platt_a": pa,
        "platt_b": pb,
        "features": [*LEXICAL_NAMES, "abs_diff[384]", "product[384]"],
        "hidden": hidden,
        "weight_decay": decay,
        "epochs": epochs,
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
    )
    (OUT / "equivalence.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = (OUT / ARTIFACT).stat().st_size
    print(f"wrote {OUT / ARTIFACT} ({size / 1e6:.2f} MB) in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
