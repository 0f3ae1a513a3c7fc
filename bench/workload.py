"""Workload construction for the replay benchmark: texts with known intents on a real trace.

Texts come from labelled data in ``../shared/data`` so that every cache hit can be judged:

- an *intent* is a set of texts that deserve the same answer (QQP duplicate pairs, GPTCache's
  origin/paraphrase pairs, a chit-chat paraphrase group; any other text is its own intent);
- a *family* is a set of intents asked about the same thing: a QQP pair labelled *not*
  duplicate is one family of two intents, so both sides are asked with similar frequency and
  a hit of one on the other (a hard negative) is measured, not hoped for.

Families are split in two halves by a hash of their key: ``dev`` (for fitting thresholds) and
``test`` (what is replayed), so nothing is fitted on what is scored; a family holding a QQP
text that cachegate's equivalence checker was fitted on (its artifact records the split) is
kept out of ``test`` too. Each request draws a
category from the mix, a family from that category's pool by a Zipf law of the category's own
exponent (power law for code, near-uniform for conversation), an intent within the family and
a text within the intent, uniformly. Arrival times and token counts come from a trace
(Azure LLM inference CSV or Mooncake JSONL), time-compressed by ``speedup``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.embcache import SHARED_DATA

CATEGORIES = ("code", "math", "factual", "conversation", "time_sensitive", "general")
# Share of requests per category (the trace carries no text, so the mix is ours).
DEFAULT_MIX = {
    "code": 0.25,
    "conversation": 0.20,
    "factual": 0.15,
    "general": 0.20,
    "math": 0.10,
    "time_sensitive": 0.10,
}
# Zipf exponent of family popularity per category (0 = uniform). Code is asked in a power
# law, conversation near-uniformly, as the category-aware caching paper reports.
DEFAULT_ZIPF = {
    "code": 1.1,
    "math": 0.9,
    "factual": 1.0,
    "general": 1.0,
    "conversation": 0.0,
    "time_sensitive": 0.5,
}
# Families in a category's pool per request of that category: a smaller pool repeats more.
DEFAULT_POOL = {
    "code": 0.6,
    "math": 0.8,
    "factual": 1.0,
    "general": 1.0,
    "conversation": 1.0,
    "time_sensitive": 2.0,
}
TRACES = {
    "azure-code": "traces/AzureLLMInferenceTrace_code.csv",
    "azure-conv": "traces/AzureLLMInferenceTrace_conv.csv",
    "mooncake": "traces/mooncake_conversation_trace.jsonl",
}


# CLINC150 small-talk intents: every query of one deserves the assistant's one answer (its
# name, age, maker...). Other CLINC/HWU intents depend on an entity (fun fact about X,
# status of flight Y) and stay one intent per text.
SMALL_TALK = frozenset(
    [
        "thank_you",
        "are_you_a_bot",
        "where_are_you_from",
        "who_do_you_work_for",
        "what_is_your_name",
        "greeting",
        "who_made_you",
        "what_are_your_hobbies",
        "do_you_have_pets",
        "how_old_are_you",
        "meaning_of_life",
        "goodbye",
        "what_can_i_ask_you",
    ]
)


class WorkloadError(Exception):
    """The data a workload needs is missing or unusable."""


@dataclass(frozen=True)
class Family:
    key: str
    category: str
    intents: tuple[tuple[str, ...], ...]  # each intent: its texts


@dataclass(frozen=True)
class TracePoint:
    at_s: float  # seconds since the first request of the trace
    context_tokens: int
    generated_tokens: int


@dataclass(frozen=True)
class Request:
    index: int
    at_s: float  # wall-clock offset from the start of the replay
    category: str
    intent: str  # "<family key>/<intent number>"
    text: str
    context_tokens: int  # from the trace: what the real request cost
    generated_tokens: int
    max_tokens: int  # generated tokens capped, sent to the simulated backend


@dataclass(frozen=True)
class Workload:
    requests: tuple[Request, ...]
    part: str
    trace: str
    speedup: float
    seed: int

    def intent_of_text(self) -> dict[str, str]:
        return {r.text: r.intent for r in self.requests}


def data_path(rel: str, root: Path | None = None) -> Path:
    path = (root or SHARED_DATA) / rel
    if not path.exists():
        raise WorkloadError(
            f"benchmark data {path} is missing: the replay needs ../shared/data beside the "
            "repository (see /work/shared/data/README.md)"
        )
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


class _Families:
    """Union-find over texts: ``same`` edges join intents, ``related`` edges join families."""

    def __init__(self) -> None:
        self.intent: dict[str, str] = {}
        self.family: dict[str, str] = {}
        self.category: dict[str, str] = {}

    @staticmethod
    def _find(parent: dict[str, str], x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def add(self, text: str, category: str) -> None:
        text = text.strip()
        if text and text not in self.category:
            self.category[text] = category
            self._find(self.intent, text)
            self._find(self.family, text)

    def same(self, a: str, b: str, category: str) -> None:
        self.add(a, category)
        self.add(b, category)
        self.intent[self._find(self.intent, a.strip())] = self._find(self.intent, b.strip())
        self.related(a, b, category)

    def related(self, a: str, b: str, category: str) -> None:
        self.add(a, category)
        self.add(b, category)
        self.family[self._find(self.family, a.strip())] = self._find(self.family, b.strip())

    def build(self) -> list[Family]:
        groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for text in self.category:
            fam = self._find(self.family, text)
            groups[fam][self._find(self.intent, text)].append(text)
        out = []
        for fam, intents in groups.items():
            texts = sorted(intents.values(), key=lambda ts: sorted(ts)[0])
            key = hashlib.sha256(fam.encode()).hexdigest()[:10]
            out.append(Family(key, self.category[fam], tuple(tuple(sorted(t)) for t in texts)))
        return sorted(out, key=lambda f: f.key)


def load_families(root: Path | None = None) -> list[Family]:
    """All families from the labelled data (see the module docstring)."""
    fams = _Families()
    # Chit-chat groups first, so their texts keep the group's intent.
    for g in _jsonl(data_path("cache/chitchat_paraphrase_groups_dev.jsonl", root)):
        qs = [str(q) for q in g["questions"]]
        for q in qs[1:]:
            fams.same(qs[0], q, "conversation")
    with data_path("cache/gptcache_mock_pairs.json", root).open() as fh:
        for p in json.load(fh):
            fams.same(p["origin"], p["similar"], "factual")
    for row in _jsonl(data_path("cache/qqp_dev.jsonl", root)):
        a, b = str(row["a"]), str(row["b"])
        if row["duplicate"]:
            fams.same(a, b, "general")
        else:
            fams.related(a, b, "general")
    first_of: dict[str, str] = {}
    for row in _jsonl(data_path("categories/labeled_queries_dev.jsonl", root)):
        text, source = str(row["text"]), str(row["source"])
        fams.add(text, str(row["category"]))
        if source.startswith("clinc150:") and source.split(":", 1)[1] in SMALL_TALK:
            fams.same(first_of.setdefault(source, text), text, "conversation")
    # Texts equal but for case, punctuation and spacing are one question, whatever labels
    # their sources gave them.
    by_key: dict[str, str] = {}
    for text in list(fams.category):
        key = " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
        fams.same(by_key.setdefault(key, text), text, fams.category[text])
    return fams.build()


def checker_fit_texts(root: Path | None = None) -> set[str]:
    """Texts of the QQP pairs cachegate's equivalence checker was fitted on (its artifact
    records the split: a permutation by seed, the first ``fit_fraction`` fitted)."""
    path = resources.files("cache").joinpath("data", "equivalence.json")
    if not path.is_file():
        return set()
    split_info = json.loads(path.read_text()).get("split") or {}
    if split_info.get("source") != "qqp_dev.jsonl":
        return set()
    rows = _jsonl(data_path("cache/qqp_dev.jsonl", root))
    perm = np.random.default_rng(int(split_info["seed"])).permutation(len(rows))
    fit = perm[: int(float(split_info["fit_fraction"]) * len(rows))]
    return {str(rows[i][k]).strip() for i in fit for k in ("a", "b")}


def split(families: Iterable[Family], part: str, exclude: set[str] | None = None) -> list[Family]:
    """``dev`` or ``test`` half, by a hash of the family key (stable across runs). A family
    with a text in ``exclude`` (what a shipped artifact was fitted on) is never ``test``."""
    if part not in ("dev", "test"):
        raise WorkloadError(f"part must be 'dev' or 'test', got {part!r}")
    exclude = exclude or set()

    def is_test(f: Family) -> bool:
        return int(f.key, 16) % 2 == 1 and not any(t in exclude for i in f.intents for t in i)

    return [f for f in families if is_test(f) == (part == "test")]


def _azure_time(stamp: str) -> float:
    # Seven fractional digits: datetime takes six.
    head, _, frac = stamp.partition(".")
    return datetime.fromisoformat(head).timestamp() + float("0." + (frac or "0"))


def load_trace(name: str, root: Path | None = None) -> list[TracePoint]:
    if name not in TRACES:
        raise WorkloadError(f"unknown trace {name!r}; choose one of {sorted(TRACES)}")
    path = data_path(TRACES[name], root)
    points: list[tuple[float, int, int]] = []
    if path.suffix == ".csv":
        with path.open() as fh:
            for row in csv.DictReader(fh):
                points.append(
                    (
                        _azure_time(row["TIMESTAMP"]),
                        int(row["ContextTokens"]),
                        int(row["GeneratedTokens"]),
                    )
                )
    else:
        for row in _jsonl(path):
            points.append(
                (
                    float(row["timestamp"]) / 1000,
                    int(row["input_length"]),
                    int(row["output_length"]),
                )
            )
    points.sort()
    t0 = points[0][0]
    return [TracePoint(t - t0, c, g) for t, c, g in points]


def _zipf_weights(n: int, s: float) -> npt.NDArray[np.float64]:
    w: npt.NDArray[np.float64] = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / float(w.sum())


def build_workload(
    *,
    part: str = "test",
    trace: str = "azure-conv",
    speedup: float = 10.0,
    minutes: float = 2.0,
    start_min: float = 0.0,
    max_requests: int | None = None,
    max_tokens_cap: int = 64,
    seed: int = 0,
    mix: dict[str, float] | None = None,
    zipf: dict[str, float] | None = None,
    pool: dict[str, float] | None = None,
    paraphrase_share: float = 0.7,
    verbatim: float = 0.3,
    root: Path | None = None,
    families: Sequence[Family] | None = None,
) -> Workload:
    """The requests of ``minutes`` of wall-clock replay (``minutes * speedup`` of trace)."""
    if speedup <= 0 or minutes <= 0 or max_tokens_cap < 1:
        raise WorkloadError("speedup, minutes and max_tokens_cap must be > 0")
    mix = mix or DEFAULT_MIX
    zipf = {**DEFAULT_ZIPF, **(zipf or {})}
    pool = {**DEFAULT_POOL, **(pool or {})}
    unknown = set(mix) - set(CATEGORIES)
    if unknown:
        raise WorkloadError(f"unknown categories in mix: {sorted(unknown)}")
    lo, hi = start_min * 60, (start_min + minutes * speedup) * 60
    points = [p for p in load_trace(trace, root) if lo <= p.at_s < hi]
    if max_requests is not None:
        points = points[:max_requests]
    if not points:
        raise WorkloadError(f"trace {trace} has no requests between {lo:.0f} s and {hi:.0f} s")
    rng = np.random.default_rng(seed)
    cats = list(mix)
    share = np.array([mix[c] for c in cats], dtype=np.float64)
    drawn = rng.choice(len(cats), size=len(points), p=share / share.sum())
    by_cat: dict[str, list[Family]] = defaultdict(list)
    fams_all = families if families is not None else load_families(root)
    for f in split(fams_all, part, checker_fit_texts(root)):
        by_cat[f.category].append(f)
    pools: dict[str, tuple[list[Family], npt.NDArray[np.float64]]] = {}
    for ci, c in enumerate(cats):
        n_c = int((drawn == ci).sum())
        fams = list(by_cat[c])
        if not fams and n_c:
            raise WorkloadError(f"no {part} texts for category {c!r}")
        size = max(1, min(len(fams), round(n_c * pool[c])))
        pools[c] = (_pool(fams, size, paraphrase_share, rng), _zipf_weights(size, zipf[c]))
    asked: dict[str, set[str]] = defaultdict(set)
    out = []
    for i, (p, ci) in enumerate(zip(points, drawn, strict=True)):
        c = cats[int(ci)]
        fams, weights = pools[c]
        fam = fams[int(rng.choice(len(fams), p=weights))]
        k = int(rng.integers(len(fam.intents)))
        intent = f"{fam.key}/{k}"
        texts = fam.intents[k]
        # People re-ask a popular question in their own words: a repeat reuses earlier
        # words with probability ``verbatim``, otherwise words not asked yet (if any).
        fresh = [t for t in texts if t not in asked[intent]]
        if asked[intent] and fresh and rng.random() >= verbatim:
            texts = tuple(fresh)
        text = texts[int(rng.integers(len(texts)))]
        asked[intent].add(text)
        out.append(
            Request(
                index=i,
                at_s=(p.at_s - lo) / speedup,
                category=c,
                intent=intent,
                text=text,
                context_tokens=p.context_tokens,
                generated_tokens=p.generated_tokens,
                max_tokens=max(1, min(p.generated_tokens, max_tokens_cap)),
            )
        )
    return Workload(tuple(out), part, trace, speedup, seed)


def _pool(
    fams: list[Family], size: int, paraphrase_share: float, rng: np.random.Generator
) -> list[Family]:
    """``size`` families, ``paraphrase_share`` of them (where the data has enough) with
    several texts or intents, so repeats are paraphrases and hard negatives, not only
    verbatim repeats. Those take the most popular ranks: a popular question is asked by
    many people, in many wordings."""
    multi = [f for f in fams if len(f.intents) > 1 or len(f.intents[0]) > 1]
    single = [f for f in fams if not (len(f.intents) > 1 or len(f.intents[0]) > 1)]
    rng.shuffle(multi)  # type: ignore[arg-type,unused-ignore]
    rng.shuffle(single)  # type: ignore[arg-type,unused-ignore]
    take = min(len(multi), round(size * paraphrase_share))
    rest = single[: size - take]
    return multi[:take] + rest + multi[take : take + size - take - len(rest)]


def reuse_ceiling(requests: Sequence[Request]) -> float:
    """Share of requests whose intent was asked before: the most a perfect cache could hit."""
    seen: set[str] = set()
    again = 0
    for r in requests:
        again += r.intent in seen
        seen.add(r.intent)
    return again / len(requests) if requests else 0.0


def paraphrase_repeats(requests: Sequence[Request]) -> int:
    """Requests repeating an earlier intent in words not asked before: where a semantic
    cache can hit and an exact one cannot."""
    seen: dict[str, set[str]] = defaultdict(set)
    count = 0
    for r in requests:
        count += r.intent in seen and r.text not in seen[r.intent]
        seen[r.intent].add(r.text)
    return count
