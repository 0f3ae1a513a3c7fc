"""Single-flight on the request path: misses equivalent to a request whose backend call is
still in flight wait for its answer instead of calling the backend themselves.

The simulated large backend holds every request it receives (``hold``) until the test
releases it, so which requests are in flight together is decided by the test, not by
timing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from backends.embedding import Embedder
from proxy.services import Services
from tests.stack import Stack, wait_until

Cfg = dict[str, Any]


@pytest.fixture
def stack(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    def configure(cfg: Cfg) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"}
        cfg["router"] = {"enabled": False}
        cfg["auth"] = {
            "require_keys": True,
            "keys": [{"key_env": "KEY_A", "tenant": "a"}, {"key_env": "KEY_B", "tenant": "b"}],
        }
        for backend in cfg["backends"]:
            backend["retries"] = 0

    with Stack(embedder, configure=configure, env={"KEY_A": "sk-a", "KEY_B": "sk-b"}) as s:
        yield s


def client(stack: Stack, key: str = "sk-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0, timeout=30)


def ask(c: openai.OpenAI, text: str, *, system: str | None = None, **kw: Any) -> Any:
    messages = [{"role": "user", "content": text}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return c.chat.completions.with_raw_response.create(model="large", messages=messages, **kw)


def followers(stack: Stack) -> list[int]:
    async def read(s: Services) -> list[int]:
        assert s.inflight is not None
        return [f.followers for f in s.inflight.flights()]

    return stack.call(read)


def in_flight(stack: Stack) -> int:
    async def read(s: Services) -> int:
        assert s.inflight is not None
        return len(s.inflight)

    return stack.call(read)


class Held:
    """Requests sent while the large backend holds them; released together."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.pool = ThreadPoolExecutor(max_workers=8)
        stack.set_faults("large", hold=True, latency_scale=0.0)

    def send(self, fn: Callable[[], Any]) -> Future[Any]:
        return self.pool.submit(fn)

    def release(self) -> None:
        self.stack.set_faults("large", hold=False)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.pool.shutdown()


def coalesced(stack: Stack, outcome: str) -> float:
    """cachegate_coalesced_total for one outcome, summed over categories."""
    text = httpx.get(stack.url + "/metrics", timeout=5).text
    pattern = rf'^cachegate_coalesced_total\{{category="[^"]+",outcome="{outcome}"\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def stream(c: openai.OpenAI, text: str) -> tuple[str, str | None]:
    """A streamed answer's text, and the leader it was coalesced with (if any)."""
    with c.chat.completions.with_streaming_response.create(
        model="large", messages=[{"role": "user", "content": text}], stream=True
    ) as raw:
        answer = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
        return answer, raw.headers.get("x-cachegate-coalesced")


def content(raw: Any) -> str:
    text: str = raw.parse().choices[0].message.content
    return text


def test_identical_misses_share_one_backend_call(stack: Stack) -> None:
    q = "How do I reverse a list in Python?"
    with Held(stack) as held, client(stack) as c:
        leader = held.send(lambda: ask(c, q))
        assert wait_until(lambda: len(stack.received("large")) == 1)
        rest = [held.send(lambda: ask(c, q)) for _ in range(4)]
        assert wait_until(lambda: followers(stack) == [4])
        held.release()
        first, others = leader.result(30), [f.result(30) for f in rest]
    assert len(stack.received("large")) == 1  # one call answered all five
    assert first.headers["x-cachegate-cache"] == "miss"
    assert "x-cachegate-coalesced" not in first.headers
    ids = {first.parse().id}
    for raw in others:
        assert raw.headers["x-cachegate-cache"] == "hit"
        assert raw.headers["x-cachegate-coalesced"] == first.headers["x-request-id"]
        assert raw.headers["x-cachegate-similarity"] == "1.0000"
        assert raw.headers["x-cachegate-backend"] == "large"
        assert content(raw) == content(first)
        ids.add(raw.parse().id)
    assert len(ids) == 5  # each client gets its own response id
    assert in_flight(stack) == 0
    assert coalesced(stack, "served") == 4


def test_paraphrase_follows_a_different_number_goes_alone(stack: Stack) -> None:
    with Held(stack) as held, client(stack) as c:
        leader = held.send(lambda: ask(c, "How do I reverse a list in Python?"))
        sum_q = held.send(lambda: ask(c, "What is 17 * 23?"))
        assert wait_until(lambda: len(stack.received("large")) == 2)
        para = held.send(lambda: ask(c, "How can I reverse a list in Python?"))
        assert wait_until(lambda: sorted(followers(stack)) == [0, 1])
        other_sum = held.send(lambda: ask(c, "What is 17 * 24?"))
        assert wait_until(lambda: len(stack.received("large")) == 3)
        held.release()
        first, p, s1, s2 = (f.result(30) for f in (leader, para, sum_q, other_sum))
    assert p.headers["x-cachegate-coalesced"] == first.headers["x-request-id"]
    assert float(p.headers["x-cachegate-similarity"]) < 1.0
    assert content(p) == content(first)
    assert "x-cachegate-coalesced" not in s2.headers  # 17 * 24 is another question
    assert content(s2) != content(s1)
    assert len(stack.received("large")) == 3


def test_other_tenant_or_system_prompt_never_follows(stack: Stack) -> None:
    q = "What is the capital of Australia?"
    with Held(stack) as held, client(stack, "sk-a") as a, client(stack, "sk-b") as b:
        leader = held.send(lambda: ask(a, q))
        assert wait_until(lambda: len(stack.received("large")) == 1)
        other = held.send(lambda: ask(b, q))
        french = held.send(lambda: ask(a, q, system="Answer in French."))
        assert wait_until(lambda: len(stack.received("large")) == 3)
        assert followers(stack) == [0, 0, 0]  # three flights, nobody waiting
        held.release()
        results = [f.result(30) for f in (leader, other, french)]
    assert all("x-cachegate-coalesced" not in r.headers for r in results)


def test_failed_leader_hands_over_to_one_follower(stack: Stack) -> None:
    """A stream the backend breaks off is not storable, so it is not shared: the
    followers try again, one of them leads, the others follow it."""
    q = "Explain what a Python generator is."
    stack.set_faults("large", disconnect_after=2)  # streams only
    with Held(stack) as held, client(stack) as c:

        def broken_stream() -> str:
            chunks = c.chat.completions.create(
                model="large", messages=[{"role": "user", "content": q}], stream=True
            )
            with pytest.raises(openai.APIError):
                for _ in chunks:
                    pass
            return "broken"

        leader = held.send(broken_stream)
        assert wait_until(lambda: len(stack.received("large")) == 1)
        rest = [held.send(lambda: ask(c, q)) for _ in range(3)]
        assert wait_until(lambda: followers(stack) == [3])
        held.release()
        assert leader.result(30) == "broken"
        others = [f.result(30) for f in rest]
    assert len(stack.received("large")) == 2  # the broken stream and one new leader
    leads = [r for r in others if "x-cachegate-coalesced" not in r.headers]
    assert len(leads) == 1  # one follower took over; the other two followed it
    lead_id = leads[0].headers["x-request-id"]
    assert sum(r.headers.get("x-cachegate-coalesced") == lead_id for r in others) == 2
    assert len({content(r) for r in others}) == 1
    assert coalesced(stack, "retried") == 3
    assert coalesced(stack, "served") == 2


def test_streams_do_not_follow_by_default_and_no_store_does_not_lead(stack: Stack) -> None:
    q = "How do I sort a dict by value in Python?"
    with Held(stack) as held, client(stack) as c:
        leader = held.send(lambda: ask(c, q))
        assert wait_until(lambda: len(stack.received("large")) == 1)

        streamed = held.send(lambda: stream(c, q))
        assert wait_until(lambda: len(stack.received("large")) == 2)
        held.release()
        first, (text, _) = leader.result(30), streamed.result(30)
        # A no-store request does not lead: its duplicate goes alone too.
        held.stack.set_faults("large", hold=True)
        private = held.send(
            lambda: c.chat.completions.with_raw_response.create(
                model="large",
                messages=[{"role": "user", "content": "Which port does HTTPS use?"}],
                extra_headers={"Cache-Control": "no-store"},
            )
        )
        assert wait_until(lambda: len(stack.received("large")) == 3)
        again = held.send(lambda: ask(c, "Which port does HTTPS use?"))
        assert wait_until(lambda: len(stack.received("large")) == 4)
        held.release()
        assert "x-cachegate-coalesced" not in again.result(30).headers
        private.result(30)
    assert text == content(first)  # the same simulated answer, but from its own call
    assert in_flight(stack) == 0


@pytest.fixture
def streaming(embedder: Embedder, tmp_path: Path) -> Iterator[Stack]:
    def configure(cfg: Cfg) -> None:
        cfg["storage"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}"}
        cfg["router"] = {"enabled": False}
        cfg["cache"] = {"coalesce": {"streams": True}}

    with Stack(embedder, configure=configure) as s:
        yield s


def test_streams_follow_when_configured(streaming: Stack) -> None:
    q = "How do I merge two dicts in Python?"
    with Held(streaming) as held, client(streaming) as c:
        leader = held.send(lambda: ask(c, q))
        assert wait_until(lambda: len(streaming.received("large")) == 1)

        streamed = held.send(lambda: stream(c, q))
        assert wait_until(lambda: followers(streaming) == [1])
        held.release()
        first, (text, led_by) = leader.result(30), streamed.result(30)
    assert len(streaming.received("large")) == 1
    assert led_by == first.headers["x-request-id"]
    assert text == content(first)  # replayed as a well-formed SSE stream
