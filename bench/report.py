"""Judging replay outcomes and summarising them per category, per variant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench.targets import PRICES
from bench.workload import CATEGORIES, Request


@dataclass(frozen=True)
class Outcome:
    request: Request
    status: int  # HTTP status; 0 when no response came back
    latency_s: float
    cache: str  # hit | miss | bypass | none (no cache in front)
    correct: bool | None  # for hits: the served answer was produced for the same intent
    backend: str | None  # the backend that answered, or produced the cached answer
    classified: str | None  # cachegate's category header
    error: str | None = None

    @property
    def backend_call(self) -> bool:
        return self.status == 200 and self.cache != "hit"


@dataclass(frozen=True)
class Summary:
    requests: int
    hits: int
    misses: int
    bypass: int
    errors: int
    correct_hits: int
    wrong_hits: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    hit_p50_ms: float
    hit_p99_ms: float
    backend_calls: int
    tokens_saved: int
    cost_spent: float
    cost_saved: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def false_share(self) -> float:
        """Wrong hits / hits."""
        return self.wrong_hits / self.hits if self.hits else 0.0

    @property
    def false_rate(self) -> float:
        """Wrong hits / requests."""
        return self.wrong_hits / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hit_rate": self.hit_rate, "false_share": self.false_share,
                "false_rate": self.false_rate}  # fmt: skip


def _cost(r: Request, backend: str | None) -> float:
    pin, pout = PRICES.get(backend or "large", PRICES["large"])
    return (r.context_tokens * pin + r.generated_tokens * pout) / 1000


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def summarize(outcomes: Sequence[Outcome]) -> Summary:
    ok = [o for o in outcomes if o.status == 200]
    hits = [o for o in ok if o.cache == "hit"]
    lat = [o.latency_s for o in ok]
    hit_lat = [o.latency_s for o in hits]
    return Summary(
        requests=len(outcomes),
        hits=len(hits),
        misses=sum(o.cache in ("miss", "none") for o in ok),
        bypass=sum(o.cache == "bypass" for o in ok),
        errors=len(outcomes) - len(ok),
        correct_hits=sum(bool(o.correct) for o in hits),
        wrong_hits=sum(o.correct is False for o in hits),
        p50_ms=_pct(lat, 50),
        p95_ms=_pct(lat, 95),
        p99_ms=_pct(lat, 99),
        hit_p50_ms=_pct(hit_lat, 50),
        hit_p99_ms=_pct(hit_lat, 99),
        backend_calls=sum(o.backend_call for o in outcomes),
        tokens_saved=sum(o.request.context_tokens + o.request.generated_tokens for o in hits),
        cost_spent=sum(_cost(o.request, o.backend) for o in ok if o.backend_call),
        cost_saved=sum(_cost(o.request, o.backend) for o in hits),
    )


def by_category(outcomes: Sequence[Outcome]) -> dict[str, Summary]:
    out = {}
    for c in CATEGORIES:
        sub = [o for o in outcomes if o.request.category == c]
        if sub:
            out[c] = summarize(sub)
    out["overall"] = summarize(outcomes)
    return out


def _f(x: float, fmt: str = ".1f") -> str:
    return "–" if x != x else format(x, fmt)  # NaN: no sample


def category_table(label: str, rows: dict[str, Summary]) -> str:
    head = (
        f"\n#### {label}: per category (workload's category)\n\n"
        "| category | requests | hit rate | false hits / hits | false hits / requests "
        "| p50 ms | p95 ms | p99 ms | hit p99 ms | backend calls saved | tokens saved | $ saved |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {c} | {s.requests} | {s.hit_rate:.1%} | {s.false_share:.2%} | {s.false_rate:.2%} "
        f"| {_f(s.p50_ms)} | {_f(s.p95_ms)} | {_f(s.p99_ms)} | {_f(s.hit_p99_ms)} "
        f"| {s.hits} | {s.tokens_saved} | {s.cost_saved:.3f} |"
        for c, s in rows.items()
    ]
    return head + "\n".join(lines)


def comparison_table(variants: dict[str, Summary], reference: str | None) -> str:
    ref = variants.get(reference) if reference else None
    head = (
        "| variant | requests | errors | hit rate | false hits / hits | false hits / requests "
        "| backend calls (× none) | p50 ms (× none) | p95 ms | p99 ms (× none) "
        "| hit p50 ms | hit p99 ms | $ spent (× none) | $ saved |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )

    def ratio(a: float, b: float | None) -> str:
        return f" ({a / b:.2f}×)" if b else ""

    lines = []
    for name, s in variants.items():
        lines.append(
            f"| {name} | {s.requests} | {s.errors} | {s.hit_rate:.1%} | {s.false_share:.2%} "
            f"| {s.false_rate:.2%} "
            f"| {s.backend_calls}{ratio(s.backend_calls, ref.backend_calls if ref else None)} "
            f"| {_f(s.p50_ms)}{ratio(s.p50_ms, ref.p50_ms if ref else None)} | {_f(s.p95_ms)} "
            f"| {_f(s.p99_ms)}{ratio(s.p99_ms, ref.p99_ms if ref else None)} "
            f"| {_f(s.hit_p50_ms)} | {_f(s.hit_p99_ms)} "
            f"| {s.cost_spent:.3f}{ratio(s.cost_spent, ref.cost_spent if ref else None)} "
            f"| {s.cost_saved:.3f} |"
        )
    return head + "\n".join(lines)
