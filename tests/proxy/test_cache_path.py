"""The cache on the real request path: official openai client → cachegate → simulated backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backends.embedding import Embedder
from tests.stack import Stack

Cfg = dict[str, Any]


def ask(c: openai.OpenAI, text: str, *, model: str = "auto", **kw: Any) -> Any:
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


@pytest.fixture
def tenants(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    def two_tenants(cfg: Cfg) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"}
        cfg["auth"] = {
            "require_keys": True,
            "keys": [{"key_env": "KEY_A", "tenant": "a"}, {"key_env": "KEY_B", "tenant": "b"}],
        }
        cfg["router"] = {"enabled": False}
        # Fault tests turn backends off and on again; keep circuits from staying open.
        cfg["circuit"] = {"failure_threshold": 100, "cooldown_s": 1}

    env = {"KEY_A": "sk-a", "KEY_B": "sk-b"}
    with Stack(embedder, configure=two_tenants, env=env) as s:
        yield s


def oai(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0)


def test_repeat_and_paraphrase_hit_number_change_misses(tenants: Stack) -> None:
    with oai(tenants, "sk-a") as a:
        first = ask(a, "How do I reverse a list in Python?")
        assert first.headers["x-cachegate-cache"] == "miss"
        assert first.headers["x-cachegate-category"] == "code"
        tenants.flush_writes()
        again = ask(a, "How do I reverse a list in Python?")
        assert again.headers["x-cachegate-cache"] == "hit"
        assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
        assert again.parse().id != first.parse().id
        para = ask(a, "How can I reverse a list in Python?")
        assert para.headers["x-cachegate-cache"] == "hit"
        assert float(para.headers["x-cachegate-similarity"]) > 0.8

        ask(a, "What is 17 * 23?")
        tenants.flush_writes()
        other = ask(a, "What is 17 * 24?")
        assert other.headers["x-cachegate-cache"] == "miss"
        negated = ask(a, "How do I not reverse a list in Python?")
        assert negated.headers["x-cachegate-cache"] == "miss"
    assert len(tenants.received("small")) == 4  # the hits never reached a backend


def test_scope_tenant_system_prompt_and_history(tenants: Stack) -> None:
    q = "What is the capital of Australia?"
    with oai(tenants, "sk-a") as a, oai(tenants, "sk-b") as b:
        ask(a, q)
        tenants.flush_writes()
        assert ask(a, q).headers["x-cachegate-cache"] == "hit"
        assert ask(b, q).headers["x-cachegate-cache"] == "miss"  # other tenant
        system = a.chat.completions.with_raw_response.create(
            model="auto",
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": q},
            ],
        )
        assert system.headers["x-cachegate-cache"] == "miss"
        follow_a = [
            {"role": "user", "content": "How do I sort a list in Java?"},
            {"role": "assistant", "content": "Use Collections.sort."},
            {"role": "user", "content": "and in Python?"},
        ]
        follow_b = [
            {"role": "user", "content": "How do I open a file in C?"},
            {"role": "assistant", "content": "Use fopen."},
            {"role": "user", "content": "and in Python?"},
        ]
        first = a.chat.completions.with_raw_response.create(model="auto", messages=follow_a)
        assert first.headers["x-cachegate-category"] == "code"
        tenants.flush_writes()
        other = a.chat.completions.with_raw_response.create(model="auto", messages=follow_b)
        assert other.headers["x-cachegate-cache"] == "miss"
        same = a.chat.completions.with_raw_response.create(model="auto", messages=follow_a)
        assert same.headers["x-cachegate-cache"] == "hit"
        # Another model alias is another scope.
        assert ask(a, q, model="large").headers["x-cachegate-cache"] == "miss"


def test_streamed_hit_replay_and_cache_control(tenants: Stack) -> None:
    q = "Explain what a hash map is."
    with oai(tenants, "sk-a") as a:
        first = ask(a, q).parse().choices[0].message.content
        tenants.flush_writes()
        stream = a.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": q}], stream=True
        )
        text, finish = "", None
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        assert text == first and finish == "stop"
        raw = httpx.post(
            tenants.url + "/v1/chat/completions",
            headers={"authorization": "Bearer sk-a"},
            json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": q}]},
        )
        assert raw.headers["x-cachegate-cache"] == "hit"
        assert raw.text.rstrip().endswith("data: [DONE]")
        skip = ask(a, q, extra_headers={"cache-control": "no-cache"})
        assert skip.headers["x-cachegate-cache"] == "bypass"
        fresh = "A question asked with no-store."
        ask(a, fresh, extra_headers={"cache-control": "no-store"})
        tenants.flush_writes()
        assert ask(a, fresh).headers["x-cachegate-cache"] == "miss"


def test_errors_and_truncated_answers_are_never_cached(tenants: Stack) -> None:
    with oai(tenants, "sk-a") as a:
        tenants.set_faults("small", error_rate=1.0, latency_scale=0.0)
        tenants.set_faults("large", error_rate=1.0, latency_scale=0.0)
        with pytest.raises(openai.APIStatusError):
            ask(a, "Will this error be cached?")
        tenants.set_faults("small", error_rate=0.0)
        tenants.set_faults("large", error_rate=0.0)
        tenants.flush_writes()
        assert ask(a, "Will this error be cached?").headers["x-cachegate-cache"] == "miss"
        short = ask(a, "Tell me a long story about caching.", max_tokens=3)
        assert short.parse().choices[0].finish_reason == "length"
        tenants.flush_writes()
        again = ask(a, "Tell me a long story about caching.", max_tokens=3)
        assert again.headers["x-cachegate-cache"] == "miss"
        # A stream cut mid-way is not stored either.
        tenants.set_faults("small", disconnect_after=3, latency_scale=0.0)
        with pytest.raises(openai.APIError):
            for _ in a.chat.completions.create(
                model="auto", stream=True, messages=[{"role": "user", "content": "cut stream"}]
            ):
                pass
        tenants.set_faults("small", disconnect_after=None)
        tenants.flush_writes()
        assert ask(a, "cut stream").headers["x-cachegate-cache"] == "miss"


def test_bad_feedback_removes_the_cached_answer(tenants: Stack) -> None:
    q = "What does HTTP status 418 mean?"
    with oai(tenants, "sk-a") as a:
        first = ask(a, q).parse()
        tenants.flush_writes()
        hit = ask(a, q)
        assert hit.headers["x-cachegate-cache"] == "hit"
        # Another tenant cannot rate (or even see) tenant a's response.
        other = httpx.post(
            tenants.url + "/v1/feedback",
            headers={"authorization": "Bearer sk-b"},
            json={"response_id": first.id, "rating": -1},
        )
        assert other.status_code == 404
        bad = httpx.post(
            tenants.url + "/v1/feedback",
            headers={"authorization": "Bearer sk-a"},
            json={"response_id": hit.parse().id, "rating": -1},
        )
        assert bad.status_code == 200 and bad.json()["entry_removed"] is True
        assert ask(a, q).headers["x-cachegate-cache"] == "miss"
        invalid = httpx.post(
            tenants.url + "/v1/feedback",
            headers={"authorization": "Bearer sk-a"},
            json={"response_id": first.id, "rating": 7},
        )
        assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "rating"


def test_database_gone_still_answered(embedder: Embedder, tmp_path: Path) -> None:
    def unreachable(cfg: Cfg) -> None:
        # A directory that does not exist: SQLite cannot open the file.
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}"}

    with Stack(embedder, configure=unreachable) as s, oai(s, "x") as c:
        for _ in range(2):
            r = ask(c, "Is anybody there?")
            assert r.parse().choices[0].message.content
            assert r.headers["x-cachegate-cache"] == "bypass"
        metrics = httpx.get(s.url + "/metrics").text
        assert "cachegate_up 1.0" in metrics


def test_category_reaches_header_and_policy(embedder: Embedder, tmp_path: Path) -> None:
    def disable_math(cfg: Cfg) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"}
        cfg["cache"] = {"policies": {"math": {"enabled": False}}}
        cfg["router"] = {"enabled": False}

    with Stack(embedder, configure=disable_math) as s, oai(s, "x") as c:
        r = ask(c, "Solve for x: 3x + 7 = 22")
        assert r.headers["x-cachegate-category"] == "math"
        s.flush_writes()
        assert ask(c, "Solve for x: 3x + 7 = 22").headers["x-cachegate-cache"] == "bypass"
        code = ask(c, "Write a Python function that checks whether a string is a palindrome.")
        assert code.headers["x-cachegate-category"] == "code"


def test_metrics_count_hits_and_savings(tenants: Stack) -> None:
    with oai(tenants, "sk-a") as a:
        ask(a, "Who wrote Hamlet?")
        tenants.flush_writes()
        ask(a, "Who wrote Hamlet?")
    text = httpx.get(tenants.url + "/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("cachegate_cache_lookups_total")]
    assert any('result="hit"' in line and not line.endswith(" 0.0") for line in lines)
    saved = [
        line for line in text.splitlines() if line.startswith("cachegate_cost_saved_dollars_total")
    ]
    assert saved and float(saved[0].split()[-1]) > 0


def test_equivalence_verdicts_are_counted_by_outcome(tenants: Stack) -> None:
    """Why candidates were refused shows in /metrics: a paraphrase accepted, a reversed
    conversion and a word's opposite vetoed."""
    with oai(tenants, "sk-a") as a:
        ask(a, "How do I sort a list in ascending order in Python?")
        ask(a, "How do I convert a string to a date in Python?")
        tenants.flush_writes()
        asked = {
            "How can I sort a list in ascending order in Python?": "hit",
            "How do I convert a date to a string in Python?": "miss",
            "How do I sort a list in descending order in Python?": "miss",
        }
        for text, expected in asked.items():
            assert ask(a, text).headers["x-cachegate-cache"] == expected, text
    metrics = httpx.get(tenants.url + "/metrics").text
    counts = {
        line.split('outcome="')[1].split('"')[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("cachegate_equivalence_verdicts_total{")
    }
    assert counts.get("accepted", 0) >= 1
    assert counts.get("veto_order", 0) >= 1
    assert counts.get("veto_opposite", 0) >= 1
