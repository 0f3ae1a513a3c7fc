"""Request Cache-Control directives (RFC 9111) beyond no-cache/no-store: max-age bounds
the age of a served answer, only-if-cached never calls a backend (504 when nothing is
stored), and hits carry an Age header."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from backends.embedding import Embedder
from tests.hardening.conftest import KEY_A, start
from tests.stack import Stack

QUESTION = "Which river flows through Vienna?"


def chat(stack: Stack, text: str, headers: dict[str, str | bytes] | None = None) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    sent = {"Authorization": f"Bearer {KEY_A}", **(headers or {})}
    return httpx.post(stack.url + "/v1/chat/completions", json=body, headers=sent, timeout=30)


def _calls(stack: Stack) -> int:
    return len(stack.received("small")) + len(stack.received("large"))


def test_max_age_only_if_cached_and_age(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "cc.db")
    try:
        assert chat(stack, QUESTION).headers["x-cachegate-cache"] == "miss"
        stack.flush_writes()
        hit = chat(stack, QUESTION, headers={"Cache-Control": "max-age=3600"})
        assert hit.headers["x-cachegate-cache"] == "hit"
        assert 0 <= int(hit.headers["age"]) <= 60
        # Nothing stored is fresh enough for max-age=0: the backend answers (and the
        # answer is stored again, so max-age=60 then hits).
        before = _calls(stack)
        fresh = chat(stack, QUESTION, headers={"Cache-Control": "max-age=0"})
        assert fresh.headers["x-cachegate-cache"] == "miss" and _calls(stack) == before + 1
        assert "age" not in fresh.headers
        stack.flush_writes()
        assert chat(stack, QUESTION, headers={"Cache-Control": "s-maxage=60"}).headers[
            "x-cachegate-cache"] == "hit"  # fmt: skip
        # A paraphrase (semantic tier) is bound the same way.
        para = "What is the river that flows through Vienna?"
        semantic = chat(stack, para, headers={"Cache-Control": "max-age=60"})
        assert semantic.headers["x-cachegate-cache"] == "hit"
        assert float(semantic.headers["x-cachegate-similarity"]) < 1.0
        assert chat(stack, para, headers={"Cache-Control": "max-age=0"}).headers[
            "x-cachegate-cache"] == "miss"  # fmt: skip

        # only-if-cached: the stored answer, or 504 without a backend call.
        stored = chat(stack, QUESTION, headers={"Cache-Control": "only-if-cached"})
        assert stored.status_code == 200 and stored.headers["x-cachegate-cache"] == "hit"
        before = _calls(stack)
        missing = chat(stack, "Which river flows through Budapest?",
                       headers={"Cache-Control": "only-if-cached"})  # fmt: skip
        assert missing.status_code == 504
        assert missing.json()["error"]["code"] == "not_cached"
        assert missing.headers["x-should-retry"] == "false"
        assert _calls(stack) == before
        stale = chat(stack, QUESTION, headers={"Cache-Control": "only-if-cached, max-age=0"})
        assert stale.status_code == 504
        before = _calls(stack)
        retrying = openai.OpenAI(base_url=stack.url + "/v1", api_key=KEY_A)  # 2 retries
        with retrying as client, pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": "Which river flows through Prague?"}],
                extra_headers={"Cache-Control": "only-if-cached"},
            )
        assert err.value.status_code == 504
        metrics = httpx.get(stack.url + "/metrics").text
        not_cached = [line for line in metrics.splitlines()
                      if line.startswith("cachegate_requests_total") and 'status="504"' in line]  # fmt: skip
        assert sum(float(line.rsplit(" ", 1)[1]) for line in not_cached) == 3  # not 3 + 2 retries
        assert _calls(stack) == before

        # A max-age that is not a number of seconds is refused; unknown directives are not.
        for bad in ("max-age=abc", "max-age=-5", "max-age", "s-maxage=1.5", b"max-age=\xb2"):
            r = chat(stack, QUESTION, headers={"Cache-Control": bad})
            assert r.status_code == 400, bad
            assert r.json()["error"]["code"] == "invalid_cache_control"
        assert (
            chat(stack, QUESTION, headers={"Cache-Control": "max-stale, private"}).status_code
            == 200
        )
    finally:
        stack.stop()
