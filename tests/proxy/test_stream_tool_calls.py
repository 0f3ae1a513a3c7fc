"""Tool calls through the stream accumulator and the replay: parallel calls streamed
interleaved are rebuilt in index order, and a replayed answer accumulates back to
itself."""

from __future__ import annotations

import json
from typing import Any

from proxy.relay import storable
from proxy.streaming import StreamAccumulator, replay_events, with_fresh_tool_call_ids


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})  # fmt: skip


def _call(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


def test_parallel_calls_streamed_interleaved_are_rebuilt_in_order() -> None:
    acc = StreamAccumulator(chat=True)
    for data in [
        _chunk({"role": "assistant", "content": "Checking both."}),
        _chunk(_call(1, id="call_b", type="function", function={"name": "get_time", "arguments": ""})),
        _chunk(_call(0, id="call_a", type="function", function={"name": "get_weather"})),
        _chunk(_call(1, function={"arguments": '{"tz": "UTC"'})),
        _chunk(_call(0, function={"arguments": '{"city": "Oslo"}'})),
        _chunk(_call(1, function={"arguments": "}"})),
        _chunk({}, "tool_calls"),
        "[DONE]",
    ]:  # fmt: skip
        acc.add(data)
    assert acc.complete and acc.has_tool_calls
    message = acc.body()["choices"][0]["message"]
    assert message["content"] == "Checking both."
    assert message["tool_calls"] == [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_b", "type": "function",
         "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}},
    ]  # fmt: skip
    assert storable(acc.body(), chat=True)
    assert not storable(acc.body(), chat=True, tool_calls=False)


def test_replay_accumulates_back_to_the_stored_answer() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "search", "arguments": json.dumps({"q": "x" * 100})}},
        {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": ""}},
    ]}  # fmt: skip
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}  # fmt: skip
    acc = StreamAccumulator(chat=True)
    for event in replay_events(body, chat=True, include_usage=False):
        acc.add(event.decode().removeprefix("data: ").strip())
    assert acc.complete
    assert acc.body()["choices"] == body["choices"]
    fresh = with_fresh_tool_call_ids(body)
    ids = [c["id"] for c in fresh["choices"][0]["message"]["tool_calls"]]
    assert len(set(ids)) == 2 and not {"call_1", "call_2"} & set(ids)
    assert body["choices"][0]["message"]["tool_calls"][0]["id"] == "call_1"  # not mutated


def test_odd_tool_call_deltas_mark_the_answer_broken() -> None:
    for delta in (
        {"tool_calls": {"index": 0}},  # not a list
        _call(-1, id="x"),
        _call(0, id=5),
        _call(0, id="x", function={"name": ["get"]}),
        _call(0, id="x", function="get_weather"),
    ):
        acc = StreamAccumulator(chat=True)
        for data in (_chunk(delta), _chunk({}, "tool_calls"), "[DONE]"):
            acc.add(data)
        assert acc.broken and not acc.complete, delta
    # A call that never got an id or a name is not stored either.
    acc = StreamAccumulator(chat=True)
    for data in (
        _chunk(_call(0, function={"arguments": "{}"})),
        _chunk({}, "tool_calls"),
        "[DONE]",
    ):
        acc.add(data)
    assert not acc.broken and not acc.complete
