"""Routing on cache misses through the real request path (openai client → cachegate → sims)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backends.embedding import Embedder
from tests.stack import Stack

Cfg = dict[str, Any]


def ask(c: openai.OpenAI, text: str, *, model: str = "auto") -> Any:
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}]
    )


def stack_with(
    embedder: Embedder, tmp_path: Path, router: Cfg, tweak: Callable[[Cfg], None] | None = None
) -> Stack:
    tmp_path.mkdir(parents=True, exist_ok=True)

    def configure(cfg: Cfg) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"}
        cfg["router"] = router
        cfg["auth"] = {
            "require_keys": True,
            "keys": [{"key_env": "KEY_A", "tenant": "a"}, {"key_env": "KEY_B", "tenant": "b"}],
        }
        if tweak is not None:
            tweak(cfg)

    return Stack(embedder, configure=configure, env={"KEY_A": "sk-a", "KEY_B": "sk-b"})


def oai(stack: Stack, key: str = "sk-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


def test_auto_routes_both_ways_with_score_header(embedder: Embedder, tmp_path: Path) -> None:
    for threshold, tier in ((0.0, "small"), (1.0, "large")):
        with stack_with(embedder, tmp_path / tier, {"threshold": threshold}) as s, oai(s) as c:
            r = ask(c, "Which planet is known as the red planet?")
            assert r.headers["x-cachegate-backend"] == tier
            assert r.headers["x-cachegate-route"] == "router"
            score = float(r.headers["x-cachegate-router-score"])
            assert 0.0 <= score <= 1.0


def test_category_overrides(embedder: Embedder, tmp_path: Path) -> None:
    router = {"threshold": 0.0, "category_overrides": {"code": "large"}}
    with stack_with(embedder, tmp_path, router) as s, oai(s) as c:
        r = ask(c, "Write a Python function that merges two sorted lists.")
        assert r.headers["x-cachegate-category"] == "code"
        assert r.headers["x-cachegate-backend"] == "large"
        assert r.headers["x-cachegate-route"] == "override"
        assert "x-cachegate-router-score" not in r.headers
        other = ask(c, "Which planet is known as the red planet?")
        assert other.headers["x-cachegate-backend"] == "small"


def test_down_or_overloaded_backend_moves_traffic(embedder: Embedder, tmp_path: Path) -> None:
    with stack_with(embedder, tmp_path, {"threshold": 0.0}) as s, oai(s) as c:
        s.set_faults("small", error_rate=1.0, latency_scale=0.0)
        r = ask(c, "Name a prime number above 100.")
        assert r.headers["x-cachegate-backend"] == "large"
        assert r.headers["x-cachegate-route"] == "fallback"
        metrics = httpx.get(s.url + "/metrics").text
        assert "cachegate_backend_fallbacks_total" in metrics

    def tight_slo(cfg: Cfg) -> None:
        cfg["backends"][0]["ttft_slo_s"] = 0.001  # any real answer is over this SLO

    with stack_with(embedder, tmp_path / "load", {"threshold": 0.0}, tight_slo) as s, oai(s) as c:
        s.set_faults("small", latency_scale=1.0)  # 30 ms to first token: over the SLO
        s.set_faults("large", latency_scale=0.0)
        first = ask(c, "First question, before any load figure exists.")
        assert first.headers["x-cachegate-backend"] == "small"
        moved = ask(c, "Second question, once the small backend looks overloaded.")
        assert moved.headers["x-cachegate-backend"] == "large"
        assert moved.headers["x-cachegate-route"] == "load"


@pytest.fixture
def examples_stack(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    router = {"threshold": 0.0, "examples": {"k": 2, "similarity_floor": 0.5}}
    with stack_with(embedder, tmp_path, router) as s:
        yield s


def _examples_sent(stack: Stack) -> list[list[dict[str, Any]]]:
    return [r["body"]["messages"] for r in stack.received("small")]


def test_examples_prepended_from_same_tenant_only(examples_stack: Stack) -> None:
    s = examples_stack
    with oai(s, "sk-a") as a, oai(s, "sk-b") as b:
        seeded = ask(a, "How do I reverse a list in Python?", model="large")
        s.flush_writes()
        r = ask(a, "How do I reverse a string in Python?")
        assert r.headers["x-cachegate-backend"] == "small"
        assert r.headers["x-cachegate-cache"] == "miss"
        assert r.headers["x-cachegate-examples"] == "1"
        sent = _examples_sent(s)[-1]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[0]["content"] == "How do I reverse a list in Python?"
        assert sent[1]["content"] == seeded.parse().choices[0].message.content
        # Tenant b has no large answers: it gets none of tenant a's.
        other = ask(b, "How do I reverse a string in Python?")
        assert "x-cachegate-examples" not in other.headers
        assert len(_examples_sent(s)[-1]) == 1


def test_examples_never_from_bad_feedback(examples_stack: Stack) -> None:
    s = examples_stack
    with oai(s, "sk-a") as a:
        seeded = ask(a, "What is the boiling point of water at sea level?", model="large")
        s.flush_writes()
        bad = httpx.post(
            s.url + "/v1/feedback",
            headers={"authorization": "Bearer sk-a"},
            json={"response_id": seeded.parse().id, "rating": -1},
        )
        assert bad.status_code == 200 and bad.json()["entry_removed"] is True
        r = ask(a, "What is the boiling point of water on Mount Everest?")
        assert "x-cachegate-examples" not in r.headers
        assert len(_examples_sent(s)[-1]) == 1


def _agent_step(question: str, result: str) -> Any:
    """A conversation that ends in the result of the weather call the question led to."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"q": question})}}  # fmt: skip
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


def test_no_examples_for_an_agent_step(examples_stack: Stack) -> None:
    # The step answers from its tool results; an example answered from other results
    # (or from none) could only mislead the small model.
    s = examples_stack
    with oai(s, "sk-a") as a:
        ask(a, "What's the weather like in Lisbon today?", model="large")
        s.flush_writes()
        messages = _agent_step("What's the weather like in Lisbon today?", '{"sky": "rain"}')
        r = a.chat.completions.with_raw_response.create(model="auto", messages=messages)
        assert r.headers["x-cachegate-backend"] == "small"
        assert "x-cachegate-examples" not in r.headers
        assert _examples_sent(s)[-1] == messages
        # The same question on its own does get the example.
        plain = ask(a, "What's the weather like in Lisbon this morning?")
        assert plain.headers["x-cachegate-examples"] == "1"


def test_an_agent_steps_answer_is_never_an_example(examples_stack: Stack) -> None:
    # Its answer rests on tool results its text does not show: as an example for a
    # plain question it would teach the small model an answer without its evidence.
    s = examples_stack
    with oai(s, "sk-a") as a:
        step = _agent_step("Will it snow in Oslo tomorrow?", '{"snow": "20 cm"}')
        stored = a.chat.completions.with_raw_response.create(model="large", messages=step)
        assert stored.headers["x-cachegate-backend"] == "large"
        s.flush_writes()
        plain = ask(a, "Is it going to snow in Oslo tomorrow?")
        assert plain.headers["x-cachegate-backend"] == "small"
        assert plain.headers["x-cachegate-cache"] == "miss"
        assert "x-cachegate-examples" not in plain.headers
        assert len(_examples_sent(s)[-1]) == 1


def test_a_follow_ups_answer_is_never_an_example(examples_stack: Stack) -> None:
    # "And in Python?" answered in its conversation reads as an answer to a question it
    # does not show: as an example it would teach the small model a wrong premise.
    s = examples_stack
    with oai(s, "sk-a") as a:
        follow_up = [
            {"role": "user", "content": "How do I sort a list in JavaScript?"},
            {"role": "assistant", "content": "Use array.sort((a, b) => a - b)."},
            {"role": "user", "content": "How do I sort a list in Python?"},
        ]
        stored = a.chat.completions.with_raw_response.create(model="large", messages=follow_up)
        assert stored.headers["x-cachegate-backend"] == "large"
        s.flush_writes()
        plain = ask(a, "How do I sort a list in Python?")
        assert plain.headers["x-cachegate-backend"] == "small"
        assert plain.headers["x-cachegate-cache"] == "miss"  # another conversation's answer
        assert "x-cachegate-examples" not in plain.headers
        # The same question asked on its own, behind a system prompt, is example material.
        alone = [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "How do I sort a list in Python?"},
        ]
        a.chat.completions.with_raw_response.create(model="large", messages=alone)
        s.flush_writes()
        again = ask(a, "How do I sort a list of tuples in Python?")
        assert again.headers["x-cachegate-cache"] == "miss"
        assert again.headers["x-cachegate-examples"] == "1"
