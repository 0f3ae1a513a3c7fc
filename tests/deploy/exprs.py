"""The PromQL shipped in deploy/: every dashboard target and every rule, and the metric names.

Shared by test_manifests.py (names exist) and test_prometheus.py (expressions
run against a live Prometheus scraping a live cachegate).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD_DIR = DEPLOY / "grafana" / "dashboards"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = (PROMETHEUS_DIR / "rules.yml", PROMETHEUS_DIR / "alerts.yml")

# Metrics being wired by other parts (names agreed in advance); the rest are
# read from the code. Type decides the series names a metric exposes.
COMING_SOON: dict[str, str] = {
    "cachegate_cache_entries": "gauge",
    "cachegate_cache_bytes": "gauge",
    "cachegate_cache_evictions": "counter",
    "cachegate_cache_expirations": "counter",
    "cachegate_cache_write_drops": "counter",
    "cachegate_cache_store_up": "gauge",
    "cachegate_policy_effective_threshold": "gauge",
    "cachegate_load_level": "gauge",
}
# Series every Prometheus makes for its own targets.
PROMETHEUS_BUILTIN = frozenset({"up"})
# The metrics a request always moves: expressions on them must return data after a load.
TRAFFIC = frozenset(
    {
        "cachegate_requests_total",
        "cachegate_request_duration_seconds_bucket",
        "cachegate_request_duration_seconds_count",
        "cachegate_backend_requests_total",
    }
)

# Grafana's built-in variables, as a dashboard over the last few minutes would set them.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__interval_ms": "15000",
}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)$")
_NAME = re.compile(r"(?<![\w:])cachegate[_:][\w:]*")
_CONSTRUCTORS = {
    "Counter": "counter",
    "CounterMetricFamily": "counter",
    "Gauge": "gauge",
    "GaugeMetricFamily": "gauge",
    "Histogram": "histogram",
    "HistogramMetricFamily": "histogram",
    "Summary": "summary",
    "SummaryMetricFamily": "summary",
    "Info": "info",
    "InfoMetricFamily": "info",
}

Kind = Literal["panel", "variable", "record", "alert"]


@dataclass(frozen=True)
class Expr:
    where: str  # file and panel/rule, for messages
    promql: str  # as written in the file
    kind: Kind
    variables: frozenset[str] = frozenset()  # the dashboard's own template variables


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in board.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels inside collapsed rows
    return out


def dashboard_exprs() -> list[Expr]:
    found: list[Expr] = []
    for name, board in dashboards().items():
        variables = board.get("templating", {}).get("list", [])
        own = frozenset(v["name"] for v in variables)
        for v in variables:
            if v.get("type") != "query":
                continue
            query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            found.append(Expr(f"{name}: variable ${v['name']}", query, "variable", own))
        for panel in all_panels(board):
            for target in panel.get("targets", []):
                where = f"{name}: panel {panel['id']} {panel['title']!r} {target['refId']}"
                found.append(Expr(where, target["expr"], "panel", own))
    return found


def rule_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def rule_exprs() -> list[Expr]:
    found: list[Expr] = []
    for path in RULE_FILES:
        for group in rule_groups(path):
            for rule in group["rules"]:
                kind: Kind = "record" if "record" in rule else "alert"
                where = f"{path.name}: {rule.get('record') or rule.get('alert')}"
                found.append(Expr(where, rule["expr"], kind))
    return found


def recording_rules() -> dict[str, str]:
    return {
        r["record"]: r["expr"]
        for path in RULE_FILES
        for g in rule_groups(path)
        for r in g["rules"]
        if "record" in r
    }


def concrete(expr: Expr) -> str:
    """The PromQL Prometheus would receive: variables replaced, label_values() unwrapped."""
    text = expr.promql.strip()
    m = _LABEL_VALUES.match(text)
    if m:
        text = f"group by ({m.group(2)}) ({m.group(1)})"

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in expr.variables:
            return ".*"  # the variables' "All" value
        raise ValueError(f"{expr.where}: unknown variable ${name}")

    if expr.kind in ("panel", "variable"):
        text = _VAR.sub(sub, text)
    return text


def metric_names(promql: str) -> set[str]:
    """Metric and recording-rule names an expression reads (cachegate_*, cachegate:*, up)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)  # label values and strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # matchers
    names = set(_NAME.findall(text))
    if re.search(r"\bup\s*\{", promql):
        names.add("up")
    return names


def _series_names(name: str, kind: str) -> set[str]:
    if kind == "counter":
        base = name.removesuffix("_total")
        return {base + "_total"}
    if kind == "histogram":
        return {name + s for s in ("_bucket", "_sum", "_count")}
    if kind == "summary":
        return {name, name + "_sum", name + "_count"}
    if kind == "info":
        return {name + "_info"}
    return {name}


@lru_cache(maxsize=1)
def code_metrics() -> dict[str, str]:
    """Metric name → type for every prometheus_client metric created in cachegate's packages."""
    found: dict[str, str] = {}
    for package in ("proxy", "cache", "router", "classifier", "backends"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                fname = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                first = node.args[0]
                if (
                    fname in _CONSTRUCTORS
                    and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and first.value.startswith("cachegate_")
                ):
                    found[first.value] = _CONSTRUCTORS[fname]
    return found


@lru_cache(maxsize=1)
def known_series() -> frozenset[str]:
    """Every series name a dashboard or rule may read."""
    known: set[str] = set(PROMETHEUS_BUILTIN) | set(recording_rules())
    for name, kind in {**COMING_SOON, **code_metrics()}.items():
        known |= _series_names(name, kind)
    return frozenset(known)
