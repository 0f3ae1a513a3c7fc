"""Answers that call tools are cached like text answers: the first turn of an agent
loop (the model deciding to call ``get_weather``) is served from the cache when the
same question comes with the same tools, as JSON or as a stream the ``openai`` client
reassembles, with fresh call ids. Deprecated ``function_call`` answers and malformed
tool calls are relayed as sent and never stored; ``cache_tool_calls: false`` turns
storing them off for a category."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from backends.embedding import Embedder
from tests.hardening.conftest import Cfg, admin, chat, oai, start
from tests.stack import Stack

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ARGS = '{"city": "Lisbon", "unit": "celsius", "detail": "hourly forecast for the afternoon"}'
CALL = {"id": "call_backend_1", "type": "function",
        "function": {"name": "get_weather", "arguments": ARGS}}  # fmt: skip


def _answer(message: dict[str, Any], finish: str = "tool_calls") -> str:
    return json.dumps(
        {
            "id": "chatcmpl-b1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
        }
    )  # fmt: skip


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1,
                       "model": "m", "choices": [choice]})  # fmt: skip


# How OpenAI streams one call: id and name first, the arguments in pieces.
STREAMED = [
    _chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_s1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    ),
    *(
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ARGS[i : i + 7]}}]})
        for i in range(0, len(ARGS), 7)
    ),
    _chunk({}, "tool_calls"),
]


def _backends_answer(stack: Stack, **faults: Any) -> None:
    for tier in ("small", "large"):
        stack.set_faults(tier, **{"raw_answer": None, "raw_events": None, **faults})


def _ask(client: openai.OpenAI, text: str, **extra: Any) -> Any:
    messages: Any = [{"role": "user", "content": text}]
    return client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, tools=TOOLS, **extra
    )


def _streamed_call(client: openai.OpenAI, text: str) -> tuple[str, str, str, str]:
    """(x-cachegate-cache, call id, name + arguments as reassembled, finish_reason)."""
    messages: Any = [{"role": "user", "content": text}]
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, tools=TOOLS, stream=True
    )
    ids, names, arguments, finish = [], [], [], ""
    for chunk in raw.parse():
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                if call.id:
                    ids.append(call.id)
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    arguments.append(call.function.arguments)
            finish = choice.finish_reason or finish
    assert len(ids) == 1, ids
    return raw.headers["x-cachegate-cache"], ids[0], "".join(names) + "".join(arguments), finish


def _checked(cfg: Cfg) -> None:
    # A loose cosine threshold, so that the Madrid question below (cosine 0.76) is a
    # candidate and the equivalence check decides.
    cfg["cache"]["equivalence_check"] = True
    cfg["cache"]["default_policy"] = {"similarity_threshold": 0.7, "threshold_floor": 0.65}


def test_tool_call_answers_are_cached_and_replayed(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "t.db", _checked)
    client = oai(stack)
    try:
        _backends_answer(stack, raw_answer=_answer({"role": "assistant", "content": None,
                                                    "tool_calls": [CALL]}))  # fmt: skip
        question = "What's the weather like in Lisbon this afternoon?"
        first = _ask(client, question)
        assert first.headers["x-cachegate-cache"] == "miss"
        assert first.parse().choices[0].message.tool_calls[0].id == "call_backend_1"
        stack.flush_writes()
        ids = set()
        for _ in range(2):
            again = _ask(client, question)
            assert again.headers["x-cachegate-cache"] == "hit"
            choice = again.parse().choices[0]
            assert choice.finish_reason == "tool_calls" and choice.message.content is None
            (call,) = choice.message.tool_calls
            assert (call.function.name, call.function.arguments) == ("get_weather", ARGS)
            ids.add(call.id)
        # A fresh id per replay: a client answers each call by its id.
        assert len(ids) == 2 and "call_backend_1" not in ids
        # The same stored call replayed as a stream.
        status, call_id, text, finish = _streamed_call(client, question)
        assert (status, text, finish) == ("hit", "get_weather" + ARGS, "tool_calls")
        assert call_id not in ids | {"call_backend_1"}
        # A paraphrase is served the stored call; another city is another call (the
        # equivalence check refuses the stored one).
        para = _ask(client, "What is the weather like in Lisbon this afternoon?")
        assert para.headers["x-cachegate-cache"] == "hit"
        assert float(para.headers["x-cachegate-similarity"]) < 1.0
        other = _ask(client, "What's the weather like in Madrid this afternoon?")
        assert other.headers["x-cachegate-cache"] == "miss"
        # Other tools (or none) are another context: no hit.
        assert chat(stack, question).headers["x-cachegate-cache"] == "miss"

        # A streamed tool call is stored too, and replayed as JSON.
        _backends_answer(stack, raw_events=STREAMED)
        streamed_q = "Is it going to rain in Lisbon this afternoon?"
        status, call_id, text, finish = _streamed_call(client, streamed_q)
        assert (status, call_id, text, finish) == ("miss", "call_s1", "get_weather" + ARGS,
                                                   "tool_calls")  # fmt: skip
        stack.flush_writes()
        hit = _ask(client, streamed_q)
        assert hit.headers["x-cachegate-cache"] == "hit"
        (call,) = hit.parse().choices[0].message.tool_calls
        assert (call.function.name, call.function.arguments) == ("get_weather", ARGS)
        assert call.id != "call_s1"
    finally:
        client.close()
        stack.stop()


@pytest.mark.parametrize(
    "answer",
    [
        _answer({"role": "assistant", "content": None,
                 "function_call": {"name": "get_weather", "arguments": ARGS}}, "function_call"),
        _answer({"role": "assistant", "content": None, "tool_calls": [
            {**CALL, "function": {"name": "get_weather", "arguments": {"city": "Lisbon"}}}]}),
        _answer({"role": "assistant", "content": None, "tool_calls": [{**CALL, "id": None}]}),
        _answer({"role": "assistant", "content": None, "tool_calls": [CALL]}, "length"),
    ],
    ids=["legacy function_call", "arguments not a string", "no call id", "truncated"],
)  # fmt: skip
def test_odd_tool_calls_are_relayed_not_cached(
    embedder: Embedder, tmp_path: Path, answer: str
) -> None:
    stack = start(embedder, tmp_path / "o.db")
    try:
        _backends_answer(stack, raw_answer=answer)
        client = oai(stack)
        for _ in range(2):
            r = _ask(client, "What's the weather like in Lisbon?")
            assert r.headers["x-cachegate-cache"] == "miss"
            assert json.loads(r.text) == json.loads(answer)
            stack.flush_writes()
    finally:
        client.close()
        stack.stop()


def test_policy_can_keep_tool_calls_out(embedder: Embedder, tmp_path: Path) -> None:
    def no_tool_calls(cfg: Cfg) -> None:
        cfg["cache"]["default_policy"] = {"cache_tool_calls": False}

    stack = start(embedder, tmp_path / "p.db", no_tool_calls)
    try:
        client = oai(stack)
        _backends_answer(stack, raw_events=STREAMED)
        assert _streamed_call(client, "Weather in Lisbon tonight?")[0] == "miss"
        stack.flush_writes()
        assert _streamed_call(client, "Weather in Lisbon tonight?")[0] == "miss"
        _backends_answer(stack, raw_answer=_answer({"role": "assistant", "content": None,
                                                    "tool_calls": [CALL]}))  # fmt: skip
        for _ in range(2):
            assert (
                _ask(client, "Weather in Lisbon tomorrow?").headers["x-cachegate-cache"] == "miss"
            )
            stack.flush_writes()
        # Text answers are still cached.
        _backends_answer(stack)
        chat(stack, "Name a port city in Portugal")
        stack.flush_writes()
        assert chat(stack, "Name a port city in Portugal").headers["x-cachegate-cache"] == "hit"
    finally:
        client.close()
        stack.stop()


def _text_answer(text: str) -> str:
    return _answer({"role": "assistant", "content": text}, "stop")


def _step(question: str, call_id: str, result: str) -> list[Any]:
    """An agent loop's second request: the question, the model's call, its result."""
    call = {**CALL, "id": call_id}
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


def _post(client: openai.OpenAI, messages: list[Any]) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, tools=TOOLS
    )


def test_agent_loop_steps_are_cached_across_sessions(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "a.db", _checked)
    client = oai(stack)
    question = "What's the weather like in Lisbon this afternoon?"
    result = '{"temperature_c": 21, "sky": "sunny"}'
    try:
        # Session 1: the call, then the answer from its result; both stored.
        _backends_answer(stack, raw_answer=_answer({"role": "assistant", "content": None,
                                                    "tool_calls": [CALL]}))  # fmt: skip
        first = _post(client, [{"role": "user", "content": question}])
        assert first.headers["x-cachegate-cache"] == "miss"
        _backends_answer(stack, raw_answer=_text_answer("Sunny and 21 °C in Lisbon."))
        step = _post(client, _step(question, "call_backend_1", result))
        assert step.headers["x-cachegate-cache"] == "miss"
        stack.flush_writes()
        # The step's answer rests on its tool result: never shown as an example.
        with admin(stack) as a:
            listed = a.get("/cache/entries", params={"q": "Lisbon"}).json()["data"]
        assert sorted(e["example_ok"] for e in listed) == [False, True]

        # Session 2: the call is replayed with a fresh id, and the step that answers it
        # with the same result is a hit, whatever that id.
        _backends_answer(stack, raw_answer=_text_answer("not from the cache"))
        call = _post(client, [{"role": "user", "content": question}])
        assert call.headers["x-cachegate-cache"] == "hit"
        replayed = call.parse().choices[0].message
        fresh_id = replayed.tool_calls[0].id
        assert fresh_id != "call_backend_1"
        # As an agent framework sends it back: the SDK's whole message (refusal: null …).
        echoed = _step(question, fresh_id, result)
        echoed[1] = replayed.model_dump()
        assert "refusal" in echoed[1]
        again = _post(client, echoed)
        assert again.headers["x-cachegate-cache"] == "hit"
        assert again.parse().choices[0].message.content == "Sunny and 21 °C in Lisbon."
        # The same question and result in other words: the same step.
        para = _post(client, _step("What is the weather like in Lisbon this afternoon?",
                                   "call_x", result))  # fmt: skip
        assert para.headers["x-cachegate-cache"] == "hit"

        # Another result is another step: the backend answers.
        other = _post(client, _step(question, fresh_id, '{"temperature_c": 12, "sky": "rain"}'))
        assert other.headers["x-cachegate-cache"] == "miss"
        assert other.parse().choices[0].message.content == "not from the cache"
        # A result for a call the assistant did not make in this order is not the same
        # step either (the ids tie results to calls).
        swapped = _step(question, fresh_id, result)
        swapped[2]["tool_call_id"] = "call_unknown"
        assert _post(client, swapped).headers["x-cachegate-cache"] == "miss"
        # A conversation that ends in the assistant's own turn asks nothing: not cached.
        ended = [*_step(question, fresh_id, result)[:1],
                 {"role": "assistant", "content": "Sunny."}]  # fmt: skip
        assert _post(client, ended).headers["x-cachegate-cache"] == "bypass"
        # The question with an image: its text alone is not the question.
        image = _step(question, fresh_id, result)
        image[0]["content"] = [
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": "https://example.com/sky.png"}},
        ]
        assert _post(client, image).headers["x-cachegate-cache"] == "bypass"
    finally:
        client.close()
        stack.stop()


def _agent_session(client: openai.OpenAI, question: str, stream: bool) -> tuple[list[str], str]:
    """One agent loop against cachegate: ask, run the call, send its result back.
    Returns the two requests' x-cachegate-cache values and the final answer."""
    messages: Any = [{"role": "user", "content": question}]
    statuses = []
    if stream:
        status, call_id, text, finish = _streamed_call(client, question)
        name = "get_weather"
        arguments = text.removeprefix(name)
        assert finish == "tool_calls"
    else:
        raw = _post(client, messages)
        status = raw.headers["x-cachegate-cache"]
        (call,) = raw.parse().choices[0].message.tool_calls
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    statuses.append(status)
    assert name == "get_weather" and json.loads(arguments) == {"query": question}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"sky": "clear"}'},
    ]  # fmt: skip
    final = _post(client, messages)
    statuses.append(final.headers["x-cachegate-cache"])
    return statuses, final.parse().choices[0].message.content


def test_agent_loop_against_the_simulated_backend(embedder: Embedder, tmp_path: Path) -> None:
    # The simulated backend calls the first tool offered; `make run` users can try this.
    stack = start(embedder, tmp_path / "s.db")
    client = oai(stack)
    try:
        question = "What's the weather like in Lisbon tonight?"
        statuses, answer = _agent_session(client, question, stream=False)
        assert statuses == ["miss", "miss"] and answer
        stack.flush_writes()
        assert _agent_session(client, question, stream=False) == (["hit", "hit"], answer)
        assert _agent_session(client, question, stream=True) == (["hit", "hit"], answer)
        # tool_choice "none": a text answer, another context.
        messages: Any = [{"role": "user", "content": question}]
        plain = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, tools=TOOLS, tool_choice="none"
        )
        assert plain.headers["x-cachegate-cache"] == "miss"
        assert plain.parse().choices[0].message.tool_calls is None
    finally:
        client.close()
        stack.stop()
