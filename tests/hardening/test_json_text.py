"""JSON text Python parses but cannot write back: a lone UTF-16 surrogate escape
("\\ud800") parses to a str no UTF-8 encoder takes, NaN to a float no JSON response
may hold, deep nesting to a RecursionError. From a client each is refused with a
clear error; a backend's broken Unicode is repaired (U+FFFD, split pairs joined),
answered and cached. Never a 500, and the client's connection stays usable."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi import FastAPI

from backends.embedding import Embedder
from backends.jsontext import loads_strict, repair
from backends.sim import BROKEN_EVENTS
from proxy.http import install_error_handlers
from proxy.streaming import StreamAccumulator
from tests.hardening.conftest import KEY_A, chat, oai, start

EMOJI = "\U0001f600"


def test_client_json_with_lone_surrogate_nan_or_deep_nesting_is_refused(
    embedder: Embedder, tmp_path: Path
) -> None:
    stack = start(embedder, tmp_path / "u.db")
    try:
        # The official client cannot even encode one; JavaScript's JSON.stringify
        # escapes it, so such bodies do arrive: sent here as raw bytes.
        client = oai(stack)
        # A whole escaped pair (an emoji) is ordinary text.
        ok = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": f"smile {EMOJI} please"}]
        )
        assert ok.choices[0].message.content

        headers = {"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"}
        with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
            half = b'{"model":"auto","messages":[{"role":"user","content":"half \\ud800 a"}]}'
            for path, raw in (
                ("/v1/chat/completions", half),
                ("/v1/embeddings", b'{"model":"auto","input":["fine","not \\udc00 fine"]}'),
            ):
                r = http.post(path, content=raw)
                assert r.status_code == 400
                assert "lone UTF-16 surrogate" in r.json()["error"]["message"]
            nan = b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"x_extra":NaN}'
            r = http.post("/v1/chat/completions", content=nan)
            assert r.status_code == 400
            assert "NaN is not valid JSON" in r.json()["error"]["message"]
            deep = b'{"model":"auto","messages":' + b"[" * 5000 + b"]" * 5000 + b"}"
            r = http.post("/v1/chat/completions", content=deep)
            assert r.status_code == 400
            assert "nested too deeply" in r.json()["error"]["message"]
            # The same keep-alive connection serves the next request.
            body = {"model": "auto", "messages": [{"role": "user", "content": "still there?"}]}
            assert http.post("/v1/chat/completions", json=body).status_code == 200
    finally:
        stack.stop()


def test_backend_answer_with_broken_unicode_is_repaired_and_cached(
    embedder: Embedder, tmp_path: Path
) -> None:
    stack = start(embedder, tmp_path / "b.db")
    try:
        for tier in ("small", "large"):
            stack.set_faults(tier, broken_unicode=True)
        client = oai(stack)
        question = "what does the broken tail look like?"
        first = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": question}]
        )
        text = first.parse().choices[0].message.content
        assert text is not None and text.endswith(f" \ufffd {EMOJI}")
        stack.flush_writes()
        again = chat(stack, question)
        assert again.headers["x-cachegate-cache"] == "hit"
        assert again.json()["choices"][0]["message"]["content"] == text

        # Streams reach the client as the backend sent them; the stored copy is repaired.
        streamed = "and the streamed one?"
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": streamed}], stream=True
            )
            if c.choices
        ]
        assert "".join(pieces).endswith("".join(BROKEN_EVENTS))
        stack.flush_writes()
        replay = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": streamed}], stream=True
        )
        assert replay.headers["x-cachegate-cache"] == "hit"
        replayed = "".join(c.choices[0].delta.content or "" for c in replay.parse() if c.choices)
        assert replayed.endswith(f" {EMOJI} \ufffd")
    finally:
        stack.stop()


def test_stream_accumulator_joins_a_pair_split_across_events() -> None:
    acc = StreamAccumulator(chat=True)
    for piece in ("hi", *BROKEN_EVENTS):
        acc.add(json.dumps({"id": "c", "choices": [{"index": 0, "delta": {"content": piece}}]}))
    acc.add(
        json.dumps({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    )
    acc.add("[DONE]")
    assert acc.complete
    assert acc.text == f"hi {EMOJI} \ufffd"
    assert acc.body()["choices"][0]["message"]["content"] == acc.text
    json.dumps(acc.body()).encode()  # encodable, so storable


async def test_unexpected_error_closes_the_connection() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error" and "a bug" not in r.text
    # uvicorn drops the socket after Starlette re-raises: the client must not reuse it.
    assert r.headers["connection"] == "close"


def test_repair_handles_any_nesting_the_parser_accepted() -> None:
    """A backend body nested close to the recursion limit parses; repairing it from
    deeper in the call stack (the request path) must not raise RecursionError."""
    raw = ('{"a":' + "[" * 950 + '"x\\ud800"' + "]" * 950 + "}").encode()
    parsed = loads_strict(raw)

    def deeper(n: int) -> object:
        return repair(parsed) if n == 0 else deeper(n - 1)

    fixed = deeper(30)
    assert "\ufffd" in json.dumps(fixed, ensure_ascii=False)
    assert repair(loads_strict(b'{"k\\udc00": ["\\ud83d\\ude00", 1]}')) == {"k\ufffd": [EMOJI, 1]}
