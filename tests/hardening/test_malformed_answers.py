"""A backend answering valid JSON in the wrong shape: a null message, a number as
content, a string index, negative or NaN token counts. The client gets the answer
as sent (or a clean 502 for what is not JSON), nothing malformed is cached and
replayed to others, and no count breaks a metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from backends.embedding import Embedder
from tests.hardening.conftest import KEY_A, chat, start
from tests.stack import Stack

GOOD = {"role": "assistant", "content": "fine"}


def _body(**changes: Any) -> dict[str, Any]:
    body = {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": GOOD, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }  # fmt: skip
    return {**body, **changes}


def _choice(**changes: Any) -> list[dict[str, Any]]:
    return [{"index": 0, "message": GOOD, "finish_reason": "stop", **changes}]


def _answer_with(stack: Stack, *, raw_answer: str | None = None,
                 raw_events: list[str] | None = None) -> None:  # fmt: skip
    for tier in ("small", "large"):
        stack.set_faults(tier, raw_answer=raw_answer, raw_events=raw_events)


def _stream(stack: Stack, text: str) -> tuple[int, str, list[str]]:
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {KEY_A}"}
    url = stack.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        return r.status_code, r.headers.get("x-cachegate-cache", ""), events


def test_malformed_json_answers_are_relayed_not_cached(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "m.db")
    try:
        malformed = {
            "null message": _body(choices=_choice(message=None)),
            "number content": _body(choices=_choice(message={"role": "assistant", "content": 5})),
            "list content": _body(choices=_choice(message={"role": "assistant", "content": ["a"]})),
            "string index": _body(choices=_choice(index="a")),
            "two choices": _body(choices=_choice() + _choice()),
            "error object": {"error": {"message": "overloaded, try later"}},
        }
        for i, (name, body) in enumerate(malformed.items()):
            _answer_with(stack, raw_answer=json.dumps(body))
            question = f"malformed answer number {i}: {name}?"
            for _ in range(2):
                r = chat(stack, question)
                assert r.status_code == 200, (name, r.text)
                assert r.json() == body, name
                stack.flush_writes()
                assert r.headers["x-cachegate-cache"] == "miss", name

        # Token counts that are not counts are counted as 0; the answer itself is fine.
        odd_usage = _body(usage={"prompt_tokens": -5, "completion_tokens": 10**30})
        _answer_with(stack, raw_answer=json.dumps(odd_usage))
        assert chat(stack, "an answer with odd usage").status_code == 200
        stack.flush_writes()
        again = chat(stack, "an answer with odd usage")
        assert again.headers["x-cachegate-cache"] == "hit"
        assert again.json()["choices"][0]["message"]["content"] == "fine"

        # NaN is not JSON: a clean upstream error (both tiers fail here, so 503 after
        # the fallback), not a 500 when re-encoding it.
        _answer_with(stack, raw_answer=json.dumps(_body(usage={"prompt_tokens": float("nan")})))
        r = chat(stack, "an answer with NaN in it")
        assert r.status_code in (502, 503)
        assert r.json()["error"]["message"].endswith("backend sent invalid JSON")
    finally:
        stack.stop()


def test_malformed_stream_events_are_relayed_not_cached(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "s.db")
    try:

        def event(choice: Any, **extra: Any) -> str:
            return json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                               "model": "m", "choices": [choice], **extra})  # fmt: skip

        stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
        malformed = {
            "string index": [event({"index": "a", "delta": {"content": "x"}}), event(stop)],
            "delta a string": [event({"index": 0, "delta": "x"}), event(stop)],
            "number content": [event({"index": 0, "delta": {"content": 5}}), event(stop)],
            "list finish": [
                event({"index": 0, "delta": {"content": "x"}, "finish_reason": ["stop"]})
            ],
            "not an object": ["5", event(stop)],
            "NaN": ['{"choices": [{"index": 0, "delta": {"content": NaN}}]}', event(stop)],
        }
        for i, (name, events) in enumerate(malformed.items()):
            _answer_with(stack, raw_events=events)
            question = f"malformed stream number {i}: {name}?"
            for _ in range(2):
                status, cache, got = _stream(stack, question)
                assert status == 200 and cache == "miss", name
                assert got == [*events, "[DONE]"], name  # relayed as sent, ended cleanly
                stack.flush_writes()

        # The same events in a healthy shape are cached, so the checks above can fail.
        good = [event({"index": 0, "delta": {"role": "assistant", "content": "fine"}}),
                event(stop, usage={"prompt_tokens": "3", "completion_tokens": None})]  # fmt: skip
        _answer_with(stack, raw_events=good)
        assert _stream(stack, "a healthy stream")[1] == "miss"
        stack.flush_writes()
        status, cache, got = _stream(stack, "a healthy stream")
        assert (status, cache) == (200, "hit")
        assert (
            "".join(
                json.loads(e)["choices"][0]["delta"].get("content", "")
                for e in got[:-1]
                if e
                if json.loads(e)["choices"]
            )
            == "fine"
        )
    finally:
        stack.stop()
