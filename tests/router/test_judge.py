"""The sampled judge: agreement tests, bounds, and its path through the proxy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from backends.embedding import Embedder
from proxy.errors import SettingsError
from proxy.services import Services
from proxy.settings import settings_from_mapping
from router import (
    Judge,
    JudgeCase,
    JudgeConfig,
    JudgeOutcome,
    JudgeUnavailable,
    RouterConfigError,
    compare,
    read_records,
)
from tests.stack import Stack, wait_until


def test_agreement_tests() -> None:
    normalised = JudgeConfig(method="normalised")
    assert compare(normalised, "Reasoning...\nThe answer is: B. Paris!", "answer: b paris").small_ok
    assert not compare(normalised, "The answer is Rome", "The answer is Paris").small_ok
    assert not compare(normalised, "", "").small_ok  # nothing to agree on
    numeric = JudgeConfig(method="numeric")
    assert compare(numeric, "so she pays $1,234.50", "#### 1234.5").small_ok
    assert not compare(numeric, "18 apples", "#### 19").small_ok
    assert not compare(numeric, "no number here", "#### 19").small_ok
    exact = JudgeConfig(method="exact")
    assert compare(exact, " 42\n", "42").small_ok and not compare(exact, "42.", "42").small_ok
    emb = JudgeConfig(method="embedding", min_similarity=0.9)
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.8, 0.6], np.float32)
    verdict = compare(emb, "x", "y", (a, b))
    assert not verdict.small_ok and verdict.score == pytest.approx(0.8)
    assert compare(emb, "x", "y", (a, a)).small_ok


@pytest.mark.parametrize(
    "fields",
    [
        {"sample_rate": 1.5},
        {"method": "llm"},
        {"max_in_flight": 0},
        {"timeout_s": 0},
        {"min_similarity": 2.0},
        {"enabled": True, "sample_rate": 0.1},  # no records_path
    ],
)
def test_config_refuses_bad_values(fields: dict[str, Any]) -> None:
    with pytest.raises(RouterConfigError):
        JudgeConfig(**fields)


def test_settings_validate_the_judge_at_load(tmp_path: Path) -> None:
    backend = {"name": "s", "tier": "small", "base_url": "http://x/v1", "model": "m"}
    base: dict[str, Any] = {"backends": [backend]}
    with pytest.raises(SettingsError, match=r"router\.judge"):
        settings_from_mapping({**base, "router": {"judge": {"enabled": True, "sample_rate": 1}}})
    with pytest.raises(SettingsError, match="sample_rate"):
        settings_from_mapping({**base, "router": {"judge": {"sample_rate": -0.1}}})
    ok = {"enabled": True, "sample_rate": 0.05, "records_path": str(tmp_path / "j.jsonl")}
    assert settings_from_mapping({**base, "router": {"judge": ok}}).router.judge.enabled


def _case(**kw: Any) -> JudgeCase:
    fields: dict[str, Any] = {"tenant": "t", "prompt": "2+2?", "small_answer": "#### 4"}
    return JudgeCase(**{**fields, **kw})


async def test_bounded_in_flight_and_failures_counted(tmp_path: Path) -> None:
    records = tmp_path / "judge.jsonl"
    config = JudgeConfig(
        enabled=True, sample_rate=1.0, method="numeric", max_in_flight=1, records_path=records
    )
    seen: list[JudgeOutcome] = []

    async def sink(outcome: JudgeOutcome) -> None:
        seen.append(outcome)

    judge = Judge(config, sinks=[sink])
    release = asyncio.Event()

    async def slow_large() -> str:
        await release.wait()
        return "The answer is 4"

    async def failing_large() -> str:
        raise JudgeUnavailable("down")

    assert judge.wants()
    assert judge.offer(_case(example_ids=("3",)), slow_large)
    assert not judge.offer(_case(), slow_large)  # the cap: refused, not queued
    assert judge.in_flight == 1 and judge.counts.capped == 1
    release.set()
    await judge.drain()
    assert judge.offer(_case(), failing_large)
    await judge.drain()
    assert judge.offer(_case(keep_prompt=False), slow_large)
    await judge.drain()
    c = judge.counts
    assert (c.sampled, c.capped, c.agreed, c.failed, c.records) == (4, 1, 2, 1, 1)
    assert [o.case.example_ids for o in seen] == [("3",), ()]
    rows = list(read_records(records))  # what `cachegate router train` reads
    assert len(rows) == 1 and rows[0].small_ok == 1.0 and rows[0].large_ok is None


def test_sample_rate_zero_never_samples() -> None:
    judge = Judge(JudgeConfig(enabled=False, sample_rate=0.0))
    assert not any(judge.wants() for _ in range(100))
    half = Judge(JudgeConfig(enabled=True, sample_rate=0.5, records_path=Path("x"), seed=1))
    share = np.mean([half.wants() for _ in range(2000)])
    assert 0.45 < share < 0.55


# -- through cachegate with the official openai client ---------------------------------


def _stack(
    embedder: Embedder, tmp_path: Path, sample_rate: float, large_slo_s: float | None = None
) -> Stack:
    def configure(cfg: dict[str, Any]) -> None:
        if large_slo_s is not None:
            cfg["backends"][1]["ttft_slo_s"] = large_slo_s
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'j.db'}"}
        cfg["privacy"] = {"request_log": True, "store_prompts": True}
        cfg["router"] = {
            "threshold": 0.0,  # every routed miss goes small
            "examples": {"k": 2, "similarity_floor": 0.5},
            "judge": {
                "enabled": True,
                "sample_rate": sample_rate,
                "method": "normalised",
                "records_path": str(tmp_path / "judge.jsonl"),
            },
        }

    return Stack(embedder, configure=configure)


@pytest.fixture
def judged(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    with _stack(embedder, tmp_path, 1.0) as s:
        yield s


def _ask(c: openai.OpenAI, text: str, model: str = "auto") -> Any:
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}]
    )


def _drain(s: Stack) -> None:
    async def drain(services: Services) -> None:
        assert services.judge is not None
        await services.judge.drain()

    s.call(drain)


def test_judge_asks_large_in_background_and_learns(judged: Stack, tmp_path: Path) -> None:
    s = judged
    with openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as c:
        _ask(c, "How do I reverse a list in Python?", model="large")  # becomes an example
        s.flush_writes()
        before = len(s.received("large"))
        r = _ask(c, "How do I reverse a string in Python?")
        _drain(s)
    # The client got the small model's answer, with the example it was shown.
    assert r.headers["x-cachegate-backend"] == "small"
    assert r.headers["x-cachegate-examples"] == "1"
    assert r.parse().choices[0].message.content.startswith("[sim-small]")
    # The large model got the client's question, without the examples.
    judge_calls = s.received("large")[before:]
    assert len(judge_calls) == 1
    assert judge_calls[0]["body"]["messages"] == [
        {"role": "user", "content": "How do I reverse a string in Python?"}
    ]
    # The simulated models answer differently: the judge disagrees, the example's
    # shared utility drops from the prior's 0.5 and a small_ok=0 record is written.
    example_id = s.received("small")[-1]["body"]["messages"][0]["content"]
    assert example_id == "How do I reverse a list in Python?"

    async def utility(services: Services) -> tuple[float, float]:
        assert services.shared_utilities is not None and services.cache is not None
        ids = [str(e.entry_id) for e in await services.cache.list_entries(tenant="default")]
        states = await services.shared_utilities.read(ids)
        assert len(states) == 1
        (state,) = states.values()
        return state.alpha, state.beta

    assert s.call(utility) == pytest.approx((1.0, 2.0))
    rows = [json.loads(line) for line in (tmp_path / "judge.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["small_ok"] is False and rows[0]["source"] == "judge"
    assert rows[0]["prompt"] == "How do I reverse a string in Python?"
    assert [r.small_ok for r in read_records(tmp_path / "judge.jsonl")] == [0.0]
    metrics = httpx.get(s.url + "/metrics").text
    assert 'cachegate_judge_answers_total{outcome="disagreed"} 1.0' in metrics


def test_sample_rate_zero_sends_nothing_to_large(embedder: Embedder, tmp_path: Path) -> None:
    with (
        _stack(embedder, tmp_path, 0.0) as s,
        openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as c,
    ):
        for q in ("Name a prime above 100.", "Name a prime above 200.", "What is 7 x 8?"):
            assert _ask(c, q).headers["x-cachegate-backend"] == "small"
        _drain(s)
        assert s.received("large") == []
        assert not wait_until(lambda: (tmp_path / "judge.jsonl").exists(), timeout=0.2)


def test_judge_adds_no_load_to_an_overloaded_large_tier(embedder: Embedder, tmp_path: Path) -> None:
    with (
        _stack(embedder, tmp_path, 1.0, large_slo_s=0.001) as s,
        openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0) as c,
    ):
        s.set_faults("large", latency_scale=1.0)  # 30 ms to first token: over its SLO
        _ask(c, "Warm the large tier's latency figure.", model="large")
        before = len(s.received("large"))
        r = _ask(c, "Name a prime number above 100.")
        assert r.headers["x-cachegate-backend"] == "small"
        _drain(s)
        assert len(s.received("large")) == before
        metrics = httpx.get(s.url + "/metrics").text
        assert 'cachegate_judge_answers_total{outcome="shed"} 1.0' in metrics
