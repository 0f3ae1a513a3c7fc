"""Exact repeats are answered from the exact tier before anything is embedded, under the
policy of the category they were stored in; anything that policy would not serve goes
the full way (embed, classify, lookup)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backends.embedding import Embedder
from proxy.services import Services
from tests.stack import Stack

CODE_Q = "How do I reverse a list in Python?"
CHAT_Q = "Hi there, how is your day going?"


@pytest.fixture
def stack(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    def configure(cfg: dict[str, Any]) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"}
        cfg["router"] = {"enabled": False}
        cfg["cache"] = {
            # code keys on temperature; conversation on nothing; both cache streams
            "policies": {
                "code": {"sampling_params": ["temperature"], "cache_streams": True},
                "conversation": {"sampling_params": [], "cache_streams": False},
            }
        }

    with Stack(embedder, configure=configure) as s:
        yield s


def embedded(stack: Stack) -> int:
    async def count(s: Services) -> int:
        return s.embedder.embedded

    return stack.call(count)


def ask(c: openai.OpenAI, text: str, **kw: Any) -> Any:
    return c.chat.completions.with_raw_response.create(
        model="large", messages=[{"role": "user", "content": text}], **kw
    )


def test_exact_repeat_is_served_without_embedding(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0) as c:
        first = ask(c, CODE_Q, temperature=0.2)
        assert first.headers["x-cachegate-cache"] == "miss"
        assert first.headers["x-cachegate-category"] == "code"
        stack.flush_writes()
        before = embedded(stack)
        again = ask(c, CODE_Q, temperature=0.2)
        assert embedded(stack) == before  # no embedding for an exact repeat
        assert again.headers["x-cachegate-cache"] == "hit"
        assert again.headers["x-cachegate-category"] == "code"
        assert float(again.headers["x-cachegate-similarity"]) == 1.0
        assert again.parse().choices[0].message.content == first.parse().choices[0].message.content

        # A sampling parameter the category keys on changes the scope: full path, miss.
        other = ask(c, CODE_Q, temperature=0.9)
        assert other.headers["x-cachegate-cache"] == "miss"
        assert embedded(stack) == before + 1


def test_category_policy_still_decides_streams_and_no_cache(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0) as c:
        assert ask(c, CHAT_Q).headers["x-cachegate-category"] == "conversation"
        stack.flush_writes()
        assert ask(c, CHAT_Q).headers["x-cachegate-cache"] == "hit"
        # conversation does not cache streams: the stored answer is not replayed
        with c.chat.completions.with_streaming_response.create(
            model="large", messages=[{"role": "user", "content": CHAT_Q}], stream=True
        ) as streamed:
            assert streamed.headers["x-cachegate-cache"] != "hit"
            assert list(streamed.iter_lines())
        before = embedded(stack)
        bypass = c.chat.completions.with_raw_response.create(
            model="large",
            messages=[{"role": "user", "content": CHAT_Q}],
            extra_headers={"Cache-Control": "no-cache"},
        )
        assert bypass.headers["x-cachegate-cache"] != "hit"
        assert embedded(stack) == before + 1


def test_other_tenant_context_or_alias_never_takes_the_exact_path(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0) as c:
        ask(c, CHAT_Q)
        stack.flush_writes()
        with_system = c.chat.completions.with_raw_response.create(
            model="large",
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": CHAT_Q},
            ],
        )
        assert with_system.headers["x-cachegate-cache"] == "miss"
        small = c.chat.completions.with_raw_response.create(
            model="small", messages=[{"role": "user", "content": CHAT_Q}]
        )
        assert small.headers["x-cachegate-cache"] == "miss"


def test_entries_from_before_a_category_change_take_the_full_path(stack: Stack) -> None:
    async def touch_classifier(s: Services) -> None:
        assert s.classifier is not None
        s.classifier.set_min_confidence(s.classifier.min_confidence)

    with openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0) as c:
        ask(c, CHAT_Q)
        stack.flush_writes()
        stack.call(touch_classifier)
        before = embedded(stack)
        again = ask(c, CHAT_Q)
        assert embedded(stack) == before + 1  # classified anew, not served blind
        assert again.headers["x-cachegate-cache"] == "hit"  # by the full path's exact tier


def test_feedback_on_a_miss_finds_its_entry_without_counting_a_hit(stack: Stack) -> None:
    async def hits(s: Services) -> tuple[int, int]:
        assert s.cache is not None
        counts = [m.hit_count for m in s.cache.index.meta.values()]
        return sum(s.cache.hits.values()), sum(counts)

    with openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0) as c:
        miss = ask(c, CHAT_Q)
        stack.flush_writes()
        before = stack.call(hits)
        r = httpx.post(
            stack.url + "/v1/feedback", json={"response_id": miss.parse().id, "rating": -1}
        )
        assert r.status_code == 200, r.text
        assert r.json()["entry_removed"] is True  # found by its exact key, and removed
        assert stack.call(hits) == before  # feedback is not traffic
        assert ask(c, CHAT_Q).headers["x-cachegate-cache"] == "miss"
