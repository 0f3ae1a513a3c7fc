"""The OpenAI-compatible face through the official openai client, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import struct
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from backends.sim import answer_text
from tests.stack import Stack


def expected(model: str, prompt: str, tokens: int = 24) -> str:
    return answer_text(model, {"messages": [{"role": "user", "content": prompt}]}, tokens)


_clients: list[openai.OpenAI] = []


def client(stack: Stack, api_key: str = "unused") -> openai.OpenAI:
    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=api_key, max_retries=0)
    _clients.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def test_sync_chat_completion_answers_from_backend(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is a semantic cache?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == expected(
        "sim-small", "What is a semantic cache?"
    )
    assert raw.headers["x-cachegate-backend"] == "small"
    assert raw.headers["x-cachegate-route"] == "router"
    assert raw.headers["x-request-id"]
    assert completion.usage is not None and completion.usage.completion_tokens == 24


def test_pinned_alias_selects_backend_and_request_id_is_echoed(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="large",
        messages=[{"role": "user", "content": "pin me"}],
        extra_headers={"x-request-id": "req-123"},
    )
    assert raw.headers["x-request-id"] == "req-123"
    assert raw.headers["x-cachegate-backend"] == "large"
    assert raw.headers["x-cachegate-route"] == "pinned"
    assert raw.parse().choices[0].message.content == expected("sim-large", "pin me")
    # The backend's own model name pins as well.
    again = client(stack).chat.completions.create(
        model="sim-large", messages=[{"role": "user", "content": "pin me"}]
    )
    assert again.model == "sim-large"


async def test_async_streaming_chat(stack: Stack) -> None:
    aclient = openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0)
    stream = await aclient.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(parts) == expected("sim-small", "stream please")
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 24
    await aclient.close()


def test_sync_streaming_ends_with_done(stack: Stack) -> None:
    with httpx.stream(
        "POST",
        stack.url + "/v1/chat/completions",
        json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert sum(e == "data: [DONE]" for e in events) == 1
    last = json.loads(events[-2][6:])
    assert last["choices"][0]["finish_reason"] == "stop"


def test_completions_endpoint(stack: Stack) -> None:
    c = client(stack).completions.create(model="small", prompt="Say hi", max_tokens=5)
    assert c.choices[0].text.startswith("[sim-small] answer to")
    assert c.usage is not None and c.usage.completion_tokens == 5


def test_in_memory_store_caches(stack: Stack) -> None:
    # The default test stack stores in "sqlite+aiosqlite:///:memory:": a database that
    # exists only on its own connection, so the cache must migrate and use that one
    # connection (it used to migrate another, empty one and serve without a cache).
    assert stack.settings.storage.url.endswith(":memory:")
    cl = client(stack)
    ask = lambda: cl.chat.completions.with_raw_response.create(  # noqa: E731
        model="auto", messages=[{"role": "user", "content": "Where is the Louvre?"}]
    )
    assert ask().headers["x-cachegate-cache"] == "miss"
    stack.flush_writes()
    hit = ask()
    assert hit.headers["x-cachegate-cache"] == "hit"
    assert hit.parse().choices[0].message.content == expected("sim-small", "Where is the Louvre?")


def test_models_lists_aliases(stack: Stack) -> None:
    ids = {m.id for m in client(stack).models.list()}
    assert {"auto", "small", "large", "sim-small", "sim-large"} <= ids


def test_embeddings_served_by_local_model(stack: Stack) -> None:
    cl = client(stack)
    r = cl.embeddings.create(model="all-MiniLM-L6-v2-int8", input=["a cat", "a kitten", "tax law"])
    vecs = [d.embedding for d in r.data]
    assert len(vecs) == 3 and len(vecs[0]) == 384
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert abs(dot(vecs[0], vecs[0]) - 1) < 1e-3
    assert dot(vecs[0], vecs[1]) > dot(vecs[0], vecs[2])
    # base64 asked for explicitly: little-endian float32, the same vector.
    b64 = cl.embeddings.create(model="auto", input="a cat", encoding_format="base64")
    raw = base64.b64decode(b64.data[0].embedding)  # type: ignore[arg-type]
    decoded = struct.unpack("<384f", raw)
    assert abs(dot(decoded, vecs[0]) - 1) < 1e-3
    # Usage counts the model's word pieces, not whitespace words: "tax law" is 2, an
    # unusual word several, and a text over the cap only what was read of it.
    usage = lambda text: cl.embeddings.create(model="auto", input=text).usage  # noqa: E731
    assert usage("tax law").prompt_tokens == 2 == usage("tax law").total_tokens
    assert usage("antidisestablishmentarianism").prompt_tokens > 1
    assert r.usage.prompt_tokens == 6  # "a cat", "a kitten", "tax law"
    assert usage("word " * 2000).prompt_tokens < 512
    # Another width is refused before any work, as OpenAI refuses it: a 400 naming it.
    with pytest.raises(openai.BadRequestError) as err:
        cl.embeddings.create(model="auto", input="a cat", dimensions=256)
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "dimensions"
    assert cl.embeddings.create(model="auto", input="a cat", dimensions=384).data


def test_unknown_model_is_404_in_openai_shape(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client(stack).chat.completions.create(
            model="gpt-17", messages=[{"role": "user", "content": "x"}]
        )
    body = err.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_found" and body["param"] == "model"
    assert "gpt-17" in body["message"]


def test_malformed_json_and_validation_errors(stack: Stack) -> None:
    r = httpx.post(
        stack.url + "/v1/chat/completions",
        content=b'{"model": "auto", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json"
    assert "Traceback" not in r.text
    with pytest.raises(openai.BadRequestError) as bad:
        client(stack).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}], temperature=5
        )
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "temperature"
    r = httpx.post(stack.url + "/v1/chat/completions", json={"model": "auto", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


@pytest.mark.parametrize(
    ("content", "param", "message"),
    [
        # Fits no branch of `str | list[part]`: both expected kinds are named, and
        # pydantic's branch labels ("content.str") never reach the client.
        (5, "messages.0.content", "expected a string or a list of content parts"),
        # Got inside the list branch: the item itself is named.
        ([1], "messages.0.content.0", "Input should be a valid dictionary"),
    ],
)
def test_union_errors_name_the_value_and_what_was_expected(
    stack: Stack, content: object, param: str, message: str
) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": content}]}
    r = httpx.post(stack.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == param
    assert err["message"] == f"invalid value for '{param}': {message}"
    stop = httpx.post(
        stack.url + "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "x"}], "stop": 5},
    )
    assert stop.json()["error"]["message"] == (
        "invalid value for 'stop': expected a string or a list of strings"
    )


def test_unknown_route_is_json_404(stack: Stack) -> None:
    r = httpx.get(stack.url + "/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert r.headers["x-request-id"]


def test_responses_api_is_refused_with_what_to_use_instead(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0)
    with client, pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="auto", input="What is a semantic cache?")
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "unsupported_endpoint"
    assert "/v1/chat/completions" in body["message"] and "chat_completions" in body["message"]


def test_oversize_body_is_413(embedder: object) -> None:
    def small_limit(cfg: dict[str, object]) -> None:
        cfg["server"] = {**cfg["server"], "max_body_bytes": 2048}  # type: ignore[dict-item]

    with Stack(embedder, configure=small_limit) as s:  # type: ignore[arg-type]
        big = "x" * 5000
        with pytest.raises(openai.APIStatusError) as err:
            client(s).chat.completions.create(
                model="auto", messages=[{"role": "user", "content": big}]
            )
        assert err.value.status_code == 413
        # A chunked body without Content-Length is cut off as well.
        r = httpx.post(
            s.url + "/v1/chat/completions",
            content=iter([b"{" + b" " * 1500, b" " * 1500 + b"}"]),
        )
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"


def test_missing_and_invalid_keys_are_401(embedder: object) -> None:
    def keys(cfg: dict[str, object]) -> None:
        cfg["auth"] = {"require_keys": True, "keys": [{"key_env": "TEAM_KEY", "tenant": "team"}]}

    env = {"TEAM_KEY": "sk-team-secret"}
    with Stack(embedder, configure=keys, env=env) as s:  # type: ignore[arg-type]
        r = httpx.post(
            s.url + "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        bad = client(s, "sk-wrong")
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
        good = client(s, "sk-team-secret")
        ok = good.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
        assert ok.choices[0].message.content


def test_fallback_to_large_when_small_is_down(stack: Stack) -> None:
    stack.set_faults("small", error_rate=1.0, latency_scale=0.0)
    raw = client(stack).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "fall back"}]
    )
    assert raw.headers["x-cachegate-backend"] == "large"
    assert raw.headers["x-cachegate-route"] == "fallback"
    assert raw.parse().choices[0].message.content == expected("sim-large", "fall back")
    # A pinned small request does not silently change tier: the client sees the failure.
    with pytest.raises(openai.APIStatusError) as err:
        client(stack).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code in (502, 503)


def test_all_backends_down_is_503(stack: Stack) -> None:
    stack.set_faults("small", error_rate=1.0, latency_scale=0.0)
    stack.set_faults("large", error_rate=1.0, latency_scale=0.0)
    with pytest.raises(openai.InternalServerError) as err:
        client(stack).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 503
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "backend_unavailable"


def test_hanging_backend_times_out_with_504(embedder: object) -> None:
    def short_timeout(cfg: dict[str, object]) -> None:
        for b in cfg["backends"]:  # type: ignore[attr-defined]
            b["timeout_s"] = 0.5
            b["retries"] = 0

    with Stack(embedder, configure=short_timeout) as s:  # type: ignore[arg-type]
        s.set_faults("large", hang=True)
        with pytest.raises(openai.APIStatusError) as err:
            client(s).chat.completions.create(
                model="large", messages=[{"role": "user", "content": "x"}]
            )
        assert err.value.status_code == 504
        assert isinstance(err.value.body, dict) and err.value.body["code"] == "backend_timeout"


def test_mid_stream_disconnect_gives_error_event_then_done(stack: Stack) -> None:
    stack.set_faults("small", disconnect_after=4, latency_scale=0.0)
    with httpx.stream(
        "POST",
        stack.url + "/v1/chat/completions",
        json={"model": "small", "stream": True, "messages": [{"role": "user", "content": "cut"}]},
        timeout=10,
    ) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "backend_stream_broken"
    # The official client surfaces it as an error instead of hanging or truncating silently.
    with pytest.raises(openai.APIError):
        for _ in client(stack).chat.completions.create(
            model="small", stream=True, messages=[{"role": "user", "content": "cut"}]
        ):
            pass


def test_retries_do_not_duplicate_a_streamed_answer(embedder: object) -> None:
    def patient(cfg: dict[str, object]) -> None:
        cfg["circuit"] = {"failure_threshold": 1000, "cooldown_s": 1}
        for b in cfg["backends"]:  # type: ignore[attr-defined]
            b["retries"] = 3

    with Stack(embedder, configure=patient) as s:  # type: ignore[arg-type]
        _retries_do_not_duplicate(s)


def _retries_do_not_duplicate(stack: Stack) -> None:
    # Half of the attempts are throttled before any byte: cachegate retries them,
    # and each answer must still arrive exactly once.
    stack.set_faults("small", throttle_rate=0.5, seed=7, latency_scale=0.0)
    answered = 0
    for i in range(8):
        prompt = f"retry me {i}"
        try:
            stream = client(stack).chat.completions.create(
                model="auto", stream=True, messages=[{"role": "user", "content": prompt}]
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        except openai.APIStatusError:
            continue  # retries exhausted: a clean error, not a partial answer
        assert text in (expected("sim-small", prompt), expected("sim-large", prompt))
        answered += 1
    assert answered >= 6
    # More requests reached the backends than prompts were sent: retries happened
    # (a throttled small backend also counts as loaded, so some go to the large one).
    assert len(stack.received("small")) + len(stack.received("large")) > 8


async def test_200_concurrent_requests_all_answered(stack: Stack) -> None:
    aclient = openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key="x", max_retries=0)

    async def one(i: int) -> str:
        r = await aclient.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": f"question {i}"}]
        )
        return r.choices[0].message.content or ""

    answers = await asyncio.gather(*(one(i) for i in range(200)))
    # Past the small backend's max_concurrency (64) load-aware routing may send
    # some to the large one; every answer must still be the one for its prompt.
    for i, answer in enumerate(answers):
        assert answer in (
            expected("sim-small", f"question {i}"),
            expected("sim-large", f"question {i}"),
        )
    await aclient.close()


def test_health_ready_and_metrics(stack: Stack) -> None:
    assert httpx.get(stack.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(stack.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    client(stack).chat.completions.create(model="auto", messages=[{"role": "user", "content": "m"}])
    text = httpx.get(stack.url + "/metrics").text
    assert 'cachegate_requests_total{backend="small"' in text
    assert "cachegate_backend_in_flight" in text


def test_idle_keep_alive_connection_outlives_the_clients_timeout(stack: Stack) -> None:
    """httpx and the openai client drop pooled connections idle for 5 s; a server that
    closed at 5 s too would race them, and the request sent on the closing connection
    failed (a reset). The server keeps idle connections for ``server.keep_alive_s``."""
    host, port = stack.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"status":"ok"}'
        time.sleep(5.5)
        conn.request("GET", "/healthz")  # the same socket, idle past the clients' 5 s
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_input_bounds_are_refused_with_the_parameter_named(embedder: object) -> None:
    def bounds(cfg: dict[str, object]) -> None:
        cfg["limits"] = {"max_messages": 3, "max_total_chars": 500, "max_tokens_ceiling": 100}

    with Stack(embedder, configure=bounds) as s:  # type: ignore[arg-type]
        c = client(s)
        many = [{"role": "user", "content": "hi"}] * 4
        with pytest.raises(openai.BadRequestError) as err:
            c.chat.completions.create(model="auto", messages=many)  # type: ignore[arg-type]
        assert isinstance(err.value.body, dict) and err.value.body["param"] == "messages"
        with pytest.raises(openai.BadRequestError) as err:
            c.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "x" * 600}]
            )
        assert isinstance(err.value.body, dict) and err.value.body["code"] == "input_too_long"
        with pytest.raises(openai.BadRequestError) as err:
            c.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "x"}], max_tokens=101
            )
        assert isinstance(err.value.body, dict) and err.value.body["param"] == "max_tokens"
        ok = c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}], max_tokens=100
        )
        assert ok.choices[0].message.content
