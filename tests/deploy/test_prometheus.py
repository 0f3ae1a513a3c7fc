"""The shipped Prometheus rules and Grafana dashboards against a real Prometheus and a live cachegate.

A cachegate in front of simulated backends takes a short load through the
official openai client; a Prometheus of our own scrapes it every second with
the shipped rule files loaded. Then every PromQL expression of the dashboards
and rules goes through Prometheus's HTTP API: each must parse and evaluate,
and each whose metrics the live cachegate exports must return data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backends import OnnxEmbedder
from tests.deploy import exprs
from tests.deploy.promserver import Prometheus, promtool
from tests.stack import Stack

pytestmark = pytest.mark.prometheus

# Trained artifacts that their packages bundle; while one is not committed yet the
# stack runs without that step (the metrics this test reads are the same).
ARTIFACT_OFF = {
    exprs.ROOT / "router" / "data" / "default_router.npz": {"router": {"enabled": False}},
    exprs.ROOT / "cache" / "data" / "equivalence.npz": {"cache": {"equivalence_check": False}},
}

PROMPTS = [
    "What is a semantic cache?",
    "Write a Python function that reverses a string.",
    "What is 17 times 23?",
    "Tell me a short story about a lighthouse.",
    "What is the capital of Australia?",
    "How do I sort a list in Go?",
    "Explain HNSW in one paragraph.",
    "What's the weather usually like in Lisbon in May?",
    "Summarise the plot of Hamlet.",
    "What does HTTP 429 mean?",
]


def test_promtool_accepts_shipped_config_rules_and_unit_tests() -> None:
    config = promtool("check", "config", str(exprs.PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", *map(str, exprs.RULE_FILES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    unit = promtool("test", "rules", str(exprs.PROMETHEUS_DIR / "tests" / "alerts_test.yml"))
    assert unit.returncode == 0, unit.stdout + unit.stderr


@pytest.fixture
def live(embedder: OnnxEmbedder, tmp_path: Path) -> Iterator[tuple[Stack, Prometheus]]:
    def configure(cfg: dict[str, Any]) -> None:
        # A file, so that the cache's store is shared by all its connections.
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"}
        for artifact, override in ARTIFACT_OFF.items():
            if not artifact.exists():
                cfg.update(override)

    with (
        Stack(embedder, configure=configure) as stack,
        Prometheus(tmp_path, f"127.0.0.1:{stack.port}", exprs.RULE_FILES) as prom,
    ):
        yield stack, prom


def send_load(stack: Stack) -> int:
    """28 requests: misses then repeats (hits), streams, a pinned tier, 4 errors.

    Returns how many were answered 200.
    """
    answered = 0
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as client:
        for i in range(24):
            if i == len(PROMPTS):
                stack.flush_writes()  # the first round's answers are stored: repeats can hit
            messages: Any = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
            if i % 6 == 5:
                stream = client.chat.completions.create(
                    model="auto", messages=messages, stream=True
                )
                assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            else:
                model = "large" if i % 8 == 7 else "auto"
                answer = client.chat.completions.create(model=model, messages=messages)
                assert answer.choices[0].message.content
            answered += 1
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
        stack.set_faults("large", error_rate=1.0)
        for prompt in PROMPTS[:3]:
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(
                    model="large", messages=[{"role": "user", "content": "fail: " + prompt}]
                )
        stack.set_faults("large", error_rate=0.0)
    return answered


def exported_requests(stack: Stack) -> float:
    text = httpx.get(stack.url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cachegate_requests_total{")
    )


def wait_for(predicate: object, what: str, timeout: float = 15) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def test_every_dashboard_and_rule_expression_on_live_cachegate(
    live: tuple[Stack, Prometheus],
) -> None:
    stack, prom = live
    answered = send_load(stack)
    total = exported_requests(stack)
    assert total >= answered
    # The scrape that sees the whole load, then one more so every rate has two points after it.
    wait_for(lambda: prom.value("sum(cachegate_requests_total)") == total, "the load's scrape")
    seen = prom.value('max(timestamp(up{job="cachegate"}))')
    assert seen is not None
    wait_for(lambda: (prom.value('max(timestamp(up{job="cachegate"}))') or 0) > seen, "a scrape")
    wait_for(lambda: prom.value("cachegate:requests:rate5m") is not None, "rule evaluation")
    assert (prom.value('count_over_time(up{job="cachegate"}[5m])') or 0) >= 2

    # Repeats were served from the cache, so the hit-side panels have data to show.
    assert (prom.value('sum(cachegate_cache_lookups_total{result="hit"})') or 0) > 0
    present = prom.series_names() | set(exprs.recording_rules())
    missing_traffic = exprs.TRAFFIC - present
    assert not missing_traffic, f"the live cachegate does not export {sorted(missing_traffic)}"

    failures: list[str] = []
    checked_data = 0
    all_exprs = exprs.dashboard_exprs() + exprs.rule_exprs()
    for expr in all_exprs:
        promql = exprs.concrete(expr)
        body = prom.query(promql)
        if body.get("status") != "success":
            failures.append(f"{expr.where}: {body.get('error')}\n    {promql}")
            continue
        # Alerts are conditions: empty means "not firing". Everything else must show
        # data as soon as the metrics it reads exist on the live cachegate.
        if expr.kind == "alert" or not exprs.metric_names(expr.promql) <= present:
            continue
        checked_data += 1
        if not body["data"]["result"]:
            failures.append(f"{expr.where}: no data\n    {promql}")
    assert not failures, "\n".join(failures)
    traffic_exprs = [e for e in all_exprs if exprs.metric_names(e.promql) & exprs.TRAFFIC]
    assert len(traffic_exprs) >= 10 and checked_data >= len(traffic_exprs) // 2

    # Every rule evaluated without error inside Prometheus itself.
    groups = prom.api("rules")["data"]["groups"]
    unhealthy = [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in groups
        for rule in group["rules"]
        if rule.get("health") not in ("ok", "unknown") or rule.get("lastError")
    ]
    assert not unhealthy, unhealthy
    assert sum(len(g["rules"]) for g in groups) == len(exprs.rule_exprs())
