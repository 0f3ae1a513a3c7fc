"""Writes cachegate's Grafana dashboards (deploy/grafana/dashboards/*.json).

The JSON files are generated so that panel ids, grid positions and the
datasource wiring stay consistent; edit the panels here and run

    python deploy/grafana/generate.py

tests/deploy/test_manifests.py fails when the committed JSON differs from what
this script writes. Every expression is also evaluated against a live
cachegate by tests/deploy/test_prometheus.py.

Ratios guard their numerator (``or vector(0)``, ``or 0 * ...``) so that a
panel reads 0 rather than "No data" while nothing has been hit or has failed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
CAT = 'category=~"$category"'
BACKEND = 'backend=~"$backend"'


def hit_ratio(by: str, selector: str = "") -> str:
    """Share of requests served from the cache, 0 (not empty) when there were none."""
    sel = f"{{{selector}}}" if selector else ""
    hit_sel = f'{{cache="hit"{"," + selector if selector else ""}}}'
    total = f"sum{by}(rate(cachegate_requests_total{sel}[{RI}]))"
    hits = f"sum{by}(rate(cachegate_requests_total{hit_sel}[{RI}]))"
    guard = "vector(0)" if not by else f"0 * {total}"
    return f"({hits} or {guard}) / {total}"


def error_ratio(metric: str, bad: str, by: str, selector: str = "") -> str:
    extra = f",{selector}" if selector else ""
    sel = f"{{{selector}}}" if selector else ""
    total = f"sum{by}(rate({metric}{sel}[{RI}]))"
    errors = f"sum{by}(rate({metric}{{{bad}{extra}}}[{RI}]))"
    guard = "vector(0)" if not by else f"0 * {total}"
    return f"({errors} or {guard}) / {total}"


def quantile(q: float, metric: str, by: str = "", selector: str = "") -> str:
    sel = f"{{{selector}}}" if selector else ""
    labels = ", ".join(["le", *[b.strip() for b in by.split(",") if b.strip()]])
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{sel}[{RI}])))"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (expr, legend)
    unit: str = "short"
    _: KW_ONLY
    kind: str = "timeseries"
    description: str = ""
    w: int = 12
    h: int = 8
    min: float | None = None
    max: float | None = None
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("timeseries", "stat"):
            raise ValueError(f"panel {self.title!r}: unknown kind {self.kind!r}")


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit}
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    steps = p.thresholds or [(None, "green")]
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }
    targets = [
        {
            "datasource": DS,
            "expr": expr,
            "legendFormat": legend,
            "range": True,
            "refId": chr(ord("A") + i),
        }
        for i, (expr, legend) in enumerate(p.targets)
    ]
    panel: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": p.w, "h": p.h},
        "targets": targets,
    }
    if p.kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        panel["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    else:
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
        }
        panel["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    return panel


def _variables(extra: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        }
    ]
    for name, label, query in extra:
        out.append(
            {
                "name": name,
                "label": label,
                "type": "query",
                "datasource": DS,
                "definition": query,
                "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "refresh": 2,
                "sort": 1,
                "hide": 0,
            }
        )
    return out


def dashboard(
    uid: str, title: str, description: str, rows: list[Row], variables: list[tuple[str, str, str]]
) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        pid, y, x, line_h = pid + 1, y + 1, 0, 0
        for p in row.panels:
            if x + p.w > 24:
                x, y, line_h = 0, y + line_h, 0
            panels.append(_panel_json(p, pid, x, y))
            pid, x, line_h = pid + 1, x + p.w, max(line_h, p.h)
        y += line_h
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["cachegate"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "links": [
            {
                "title": "cachegate",
                "type": "dashboards",
                "tags": ["cachegate"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": _variables(variables)},
        "panels": panels,
    }


CATEGORY_VAR = ("category", "Category", "label_values(cachegate_requests_total, category)")
BACKEND_VAR = ("backend", "Backend", "label_values(cachegate_backend_requests_total, backend)")
RATIO = {"unit": "percentunit", "min": 0.0, "max": 1.0}


def overview() -> dict[str, Any]:
    lat = "cachegate_request_duration_seconds"
    return dashboard(
        "cachegate-overview",
        "cachegate / Overview",
        "Traffic, cache hit rate, latency, cost saved and errors across all replicas.",
        [
            Row(
                "Traffic",
                [
                    Panel(
                        "Requests/s",
                        [(f"sum(rate(cachegate_requests_total[{RI}]))", "req/s")],
                        "reqps",
                        kind="stat",
                        w=4,
                        h=5,
                    ),
                    Panel(
                        "Cache hit rate",
                        [(hit_ratio(""), "hit rate")],
                        kind="stat",
                        w=4,
                        h=5,
                        **RATIO,
                    ),
                    Panel(
                        "5xx error rate",
                        [(error_ratio("cachegate_requests_total", 'status=~"5.."', ""), "errors")],
                        kind="stat",
                        w=4,
                        h=5,
                        thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
                        **RATIO,
                    ),
                    Panel(
                        "p95 latency", [(quantile(0.95, lat), "p95")], "s", kind="stat", w=4, h=5
                    ),
                    Panel(
                        "Cost saved (time range)",
                        [("sum(increase(cachegate_cost_saved_dollars_total[$__range]))", "saved")],
                        "currencyUSD",
                        kind="stat",
                        description="Backend cost avoided by cache hits, at the configured prices.",
                        w=4,
                        h=5,
                    ),
                    Panel(
                        "Replicas serving",
                        [("sum(cachegate_up)", "up")],
                        "short",
                        kind="stat",
                        w=4,
                        h=5,
                    ),
                    Panel(
                        "Requests by cache result",
                        [
                            (
                                f"sum by (cache) (rate(cachegate_requests_total{{{CAT}}}[{RI}]))",
                                "{{cache}}",
                            )
                        ],
                        "reqps",
                        w=8,
                    ),
                    Panel(
                        "Requests by category",
                        [
                            (
                                f"sum by (category) (rate(cachegate_requests_total{{{CAT}}}[{RI}]))",
                                "{{category}}",
                            )
                        ],
                        "reqps",
                        w=8,
                    ),
                    Panel(
                        "Requests by endpoint and status",
                        [
                            (
                                f"sum by (endpoint, status) (rate(cachegate_requests_total{{{CAT}}}[{RI}]))",
                                "{{endpoint}} {{status}}",
                            )
                        ],
                        "reqps",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Cache effect",
                [
                    Panel(
                        "Hit rate, overall and per category",
                        [
                            (hit_ratio(""), "all"),
                            (hit_ratio(" by (category) ", CAT), "{{category}}"),
                        ],
                        **RATIO,
                        w=8,
                    ),
                    Panel(
                        "Cost per hour: spent and saved",
                        [
                            (
                                f"sum(rate(cachegate_backend_cost_dollars_total[{RI}])) * 3600",
                                "spent on backends",
                            ),
                            (
                                f"sum(rate(cachegate_cost_saved_dollars_total[{RI}])) * 3600",
                                "saved by the cache",
                            ),
                        ],
                        "currencyUSD",
                        w=8,
                    ),
                    Panel(
                        "Tokens saved/s",
                        [(f"sum by (kind) (rate(cachegate_tokens_saved_total[{RI}]))", "{{kind}}")],
                        "short",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Latency",
                [
                    Panel(
                        "Latency p50 / p95 / p99",
                        [(quantile(q, lat), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)],
                        "s",
                        description="End-to-end, to the last byte.",
                        w=12,
                    ),
                    Panel(
                        "p95 latency by cache result",
                        [(quantile(0.95, lat, "cache"), "{{cache}}")],
                        "s",
                        w=12,
                    ),
                ],
            ),
            Row(
                "Errors",
                [
                    Panel(
                        "Error rate by endpoint (4xx, 5xx)",
                        [
                            (
                                error_ratio(
                                    "cachegate_requests_total", 'status=~"5.."', " by (endpoint) "
                                ),
                                "5xx {{endpoint}}",
                            ),
                            (
                                error_ratio(
                                    "cachegate_requests_total", 'status=~"4.."', " by (endpoint) "
                                ),
                                "4xx {{endpoint}}",
                            ),
                        ],
                        **RATIO,
                        w=8,
                    ),
                    Panel(
                        "Backend error rate",
                        [
                            (
                                error_ratio(
                                    "cachegate_backend_requests_total",
                                    'outcome!="ok"',
                                    " by (backend) ",
                                ),
                                "{{backend}}",
                            )
                        ],
                        **RATIO,
                        w=8,
                    ),
                    Panel(
                        "Cache store errors/s",
                        [
                            (
                                f"sum by (operation) (rate(cachegate_cache_errors_total[{RI}]))",
                                "{{operation}}",
                            )
                        ],
                        "ops",
                        description="The cache fails open: these requests were served without it.",
                        w=8,
                    ),
                ],
            ),
        ],
        [CATEGORY_VAR],
    )


def cache_internals() -> dict[str, Any]:
    sim = "cachegate_cache_hit_similarity"
    return dashboard(
        "cachegate-cache",
        "cachegate / Cache internals",
        "Lookups, similarity of hits, index size, evictions, the write path, the store and stage latencies.",
        [
            Row(
                "Lookups",
                [
                    Panel(
                        "Store up (min over replicas)",
                        [("min(cachegate_cache_store_up)", "store up")],
                        "bool_yes_no",
                        kind="stat",
                        w=4,
                        h=5,
                        thresholds=[(None, "red"), (1, "green")],
                    ),
                    Panel(
                        "Write drops/s",
                        [(f"sum(rate(cachegate_cache_write_drops_total[{RI}]))", "drops")],
                        "ops",
                        kind="stat",
                        w=4,
                        h=5,
                        thresholds=[(None, "green"), (0.001, "red")],
                    ),
                    Panel(
                        "Lookups/s",
                        [(f"sum(rate(cachegate_cache_lookups_total{{{CAT}}}[{RI}]))", "lookups")],
                        "ops",
                        kind="stat",
                        w=4,
                        h=5,
                    ),
                    Panel(
                        "Entries (all categories)",
                        [("sum(max by (category) (cachegate_cache_entries))", "entries")],
                        "short",
                        kind="stat",
                        w=4,
                        h=5,
                    ),
                    Panel(
                        "Bytes (all categories)",
                        [("sum(max by (category) (cachegate_cache_bytes))", "bytes")],
                        "bytes",
                        kind="stat",
                        w=4,
                        h=5,
                    ),
                    Panel(
                        "Cache errors/s",
                        [(f"sum(rate(cachegate_cache_errors_total[{RI}]))", "errors")],
                        "ops",
                        kind="stat",
                        w=4,
                        h=5,
                        thresholds=[(None, "green"), (0.001, "red")],
                    ),
                    Panel(
                        "Lookups by result",
                        [
                            (
                                f"sum by (result) (rate(cachegate_cache_lookups_total{{{CAT}}}[{RI}]))",
                                "{{result}}",
                            )
                        ],
                        "ops",
                        w=8,
                    ),
                    Panel(
                        "Lookup hit rate by category",
                        [
                            (
                                f'(sum by (category) (rate(cachegate_cache_lookups_total{{result="hit",{CAT}}}[{RI}])) '
                                f"or 0 * sum by (category) (rate(cachegate_cache_lookups_total{{{CAT}}}[{RI}]))) "
                                f"/ sum by (category) (rate(cachegate_cache_lookups_total{{{CAT}}}[{RI}]))",
                                "{{category}}",
                            )
                        ],
                        **RATIO,
                        w=8,
                    ),
                    Panel(
                        "Lookup errors by category",
                        [
                            (
                                f'sum by (category) (rate(cachegate_cache_lookups_total{{result="error",{CAT}}}[{RI}])) '
                                f"or 0 * sum by (category) (rate(cachegate_cache_lookups_total{{{CAT}}}[{RI}]))",
                                "{{category}}",
                            )
                        ],
                        "ops",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Similarity and policy",
                [
                    Panel(
                        "Hit similarity by category (p10 / p50)",
                        [
                            (quantile(0.1, sim, "category", CAT), "p10 {{category}}"),
                            (quantile(0.5, sim, "category", CAT), "p50 {{category}}"),
                        ],
                        "percentunit",
                        description="Cosine similarity of served semantic hits; p10 close to the threshold means hits sit at the edge.",
                        w=8,
                    ),
                    Panel(
                        "Equivalence verdicts/s by outcome",
                        [
                            (
                                f"sum by (outcome) (rate(cachegate_equivalence_verdicts_total[{RI}]))",
                                "{{outcome}}",
                            )
                        ],
                        "ops",
                        description="Semantic candidates the equivalence check accepted, found below its threshold, or vetoed (veto_<kind>: another number, entity, an opposite, another question word, a reversed direction ...).",
                        w=8,
                    ),
                    Panel(
                        "Effective threshold by category",
                        [
                            (
                                f"max by (category) (cachegate_policy_effective_threshold{{{CAT}}})",
                                "{{category}}",
                            )
                        ],
                        "percentunit",
                        description="The similarity threshold in force; it relaxes under load within the category's bounds.",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Size and churn",
                [
                    Panel(
                        "Entries by category",
                        [(f"max by (category) (cachegate_cache_entries{{{CAT}}})", "{{category}}")],
                        description="Each replica holds a copy of the index: max over replicas.",
                        w=8,
                    ),
                    Panel(
                        "Bytes by category",
                        [(f"max by (category) (cachegate_cache_bytes{{{CAT}}})", "{{category}}")],
                        "bytes",
                        w=8,
                    ),
                    Panel(
                        "Evictions and expirations/s",
                        [
                            (
                                f"sum by (category) (rate(cachegate_cache_evictions_total{{{CAT}}}[{RI}]))",
                                "evicted {{category}}",
                            ),
                            (
                                f"sum by (category) (rate(cachegate_cache_expirations_total{{{CAT}}}[{RI}]))",
                                "expired {{category}}",
                            ),
                        ],
                        "ops",
                        w=8,
                    ),
                    Panel(
                        "Write drops/s by replica",
                        [
                            (
                                f"sum by (instance) (rate(cachegate_cache_write_drops_total[{RI}]))",
                                "{{instance}}",
                            )
                        ],
                        "ops",
                        w=8,
                    ),
                    Panel(
                        "Store up / cache serving by replica",
                        [
                            (
                                "min by (instance) (cachegate_cache_store_up)",
                                "{{instance}} store up",
                            ),
                            # 0 once another replica changed the embedder under this one.
                            ("min by (instance) (cachegate_cache_serving)", "{{instance}} serving"),
                        ],
                        "bool_yes_no",
                        w=8,
                        min=0.0,
                        max=1.0,
                    ),
                    Panel(
                        "Cache errors by operation",
                        [
                            (
                                f"sum by (operation) (rate(cachegate_cache_errors_total[{RI}]))",
                                "{{operation}}",
                            )
                        ],
                        "ops",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Request-path stages",
                [
                    Panel(
                        "Stage latency p50",
                        [(quantile(0.5, "cachegate_stage_duration_seconds", "stage"), "{{stage}}")],
                        "s",
                        w=12,
                    ),
                    Panel(
                        "Stage latency p95",
                        [
                            (
                                quantile(0.95, "cachegate_stage_duration_seconds", "stage"),
                                "{{stage}}",
                            )
                        ],
                        "s",
                        w=12,
                    ),
                ],
            ),
        ],
        [CATEGORY_VAR],
    )


def router_backends() -> dict[str, Any]:
    breq = "cachegate_backend_requests_total"
    return dashboard(
        "cachegate-router",
        "cachegate / Router and backends",
        "Routing decisions, fallbacks, and each backend's load, circuit, latency, errors and cost.",
        [
            Row(
                "Router",
                [
                    Panel(
                        "Decisions by tier and reason",
                        [
                            (
                                f"sum by (tier, reason) (rate(cachegate_router_decisions_total[{RI}]))",
                                "{{tier}} / {{reason}}",
                            )
                        ],
                        "ops",
                        w=8,
                    ),
                    Panel(
                        "Share routed to the large tier",
                        [
                            (
                                f'(sum(rate(cachegate_router_decisions_total{{tier="large"}}[{RI}])) or vector(0)) '
                                f"/ sum(rate(cachegate_router_decisions_total[{RI}]))",
                                "large share",
                            )
                        ],
                        **RATIO,
                        w=8,
                    ),
                    Panel(
                        "Fallbacks/s",
                        [
                            (
                                f"sum by (from_tier, to_tier) (rate(cachegate_backend_fallbacks_total[{RI}]))",
                                "{{from_tier}} → {{to_tier}}",
                            )
                        ],
                        "ops",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Backends",
                [
                    Panel(
                        "Calls by backend and outcome",
                        [
                            (
                                f"sum by (backend, outcome) (rate({breq}{{{BACKEND}}}[{RI}]))",
                                "{{backend}} {{outcome}}",
                            )
                        ],
                        "ops",
                        w=8,
                    ),
                    Panel(
                        "Error rate by backend",
                        [
                            (
                                error_ratio(breq, 'outcome!="ok"', " by (backend) ", BACKEND),
                                "{{backend}}",
                            )
                        ],
                        **RATIO,
                        w=8,
                    ),
                    Panel(
                        "In flight",
                        [
                            (
                                f"sum by (backend) (cachegate_backend_in_flight{{{BACKEND}}})",
                                "{{backend}}",
                            )
                        ],
                        w=8,
                    ),
                    Panel(
                        "Circuit state",
                        [
                            (
                                f"max by (backend) (cachegate_backend_circuit_state{{{BACKEND}}})",
                                "{{backend}}",
                            )
                        ],
                        description="0 closed, 1 half-open, 2 open (worst replica).",
                        w=8,
                        min=0.0,
                        max=2.0,
                    ),
                    Panel(
                        "Load level and overload flag",
                        [
                            (
                                f"max by (backend) (cachegate_load_level{{{BACKEND}}})",
                                "level {{backend}}",
                            ),
                            (
                                f"max by (backend) (cachegate_backend_overloaded{{{BACKEND}}})",
                                "overloaded {{backend}}",
                            ),
                        ],
                        description="Load level 0 normal, 1 elevated, 2 overloaded.",
                        w=8,
                        min=0.0,
                        max=2.0,
                    ),
                    Panel(
                        "Time to first token",
                        [
                            (
                                f"max by (backend) (cachegate_backend_ttft_ewma_seconds{{{BACKEND}}})",
                                "EWMA {{backend}}",
                            ),
                            (
                                quantile(
                                    0.95,
                                    "cachegate_stage_duration_seconds",
                                    "",
                                    'stage="backend_ttft"',
                                ),
                                "p95 all backends",
                            ),
                        ],
                        "s",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Tokens and cost",
                [
                    Panel(
                        "Tokens/s by backend",
                        [
                            (
                                f"sum by (backend, kind) (rate(cachegate_backend_tokens_total{{{BACKEND}}}[{RI}]))",
                                "{{backend}} {{kind}}",
                            )
                        ],
                        w=8,
                    ),
                    Panel(
                        "Cost per hour by backend",
                        [
                            (
                                f"sum by (backend) (rate(cachegate_backend_cost_dollars_total{{{BACKEND}}}[{RI}])) * 3600",
                                "{{backend}}",
                            )
                        ],
                        "currencyUSD",
                        w=8,
                    ),
                    Panel(
                        "Cost in time range by backend",
                        [
                            (
                                f"sum by (backend) (increase(cachegate_backend_cost_dollars_total{{{BACKEND}}}[$__range]))",
                                "{{backend}}",
                            )
                        ],
                        "currencyUSD",
                        w=8,
                    ),
                ],
            ),
        ],
        [BACKEND_VAR],
    )


DASHBOARDS = {
    "cachegate-overview.json": overview,
    "cachegate-cache.json": cache_internals,
    "cachegate-router.json": router_backends,
}


def render() -> dict[str, str]:
    """File name → JSON text, exactly as committed."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
