"""Tool calls through the stream accumulator and the replay: parallel calls streamed
interleaved are rebuilt in index order, and a replayed answer accumulates back to
itself."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert acc.complete
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


_leaf = st.none() | st.booleans() | st.integers(-2, 3) | st.text(max_size=6)
_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["index", "id", "type", "function", "name", "arguments", "content",
                         "role", "tool_calls", "delta", "finish_reason", "choices", "x"]),
        inner, max_size=4),
    max_leaves=10,
)  # fmt: skip
_tool_delta = st.fixed_dictionaries(
    {"index": st.integers(0, 2)},
    optional={
        "id": st.text(min_size=1, max_size=4),
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {}, optional={"name": st.text(max_size=4), "arguments": st.text(max_size=6)}
        ),
    },
)
_delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.none() | st.text(max_size=6),
        "tool_calls": st.lists(_tool_delta, max_size=2) | _json,
    },
)
_choice = st.fixed_dictionaries(
    {"index": st.just(0) | _json, "delta": _delta | _json},
    optional={"finish_reason": st.sampled_from(["stop", "tool_calls", "length"]) | _json},
)


_call_head = st.fixed_dictionaries(
    {"index": st.integers(0, 1), "id": st.text(min_size=1, max_size=4),
     "type": st.just("function"),
     "function": st.fixed_dictionaries({"name": st.text(min_size=1, max_size=4),
                                        "arguments": st.just("")})}
)  # fmt: skip
_call_piece = st.fixed_dictionaries(
    {
        "index": st.integers(0, 1),
        "function": st.fixed_dictionaries({"arguments": st.text(max_size=6)}),
    }
)
_good_delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.none() | st.text(max_size=6),
        "tool_calls": st.lists(_call_head | _call_piece | _tool_delta, max_size=2),
    },
)
_good_choice = st.fixed_dictionaries(
    {"index": st.just(0), "delta": _good_delta},
    optional={"finish_reason": st.sampled_from(["stop", "tool_calls", "length"])},
)
_good_chunks = st.lists(st.lists(_good_choice, min_size=1, max_size=1), max_size=8)
# Three streams in four are well-formed chunk by chunk (so that many complete); the
# fourth mixes in odd choices and junk.
_streams = (
    _good_chunks
    | _good_chunks
    | _good_chunks
    | st.lists(st.lists(_good_choice, min_size=1, max_size=1) | st.lists(_choice, max_size=2)
               | _json, max_size=8)
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(chunks=_streams)
def test_any_stream_is_either_refused_or_stored_and_replayed_as_itself(chunks: list[Any]) -> None:
    acc = StreamAccumulator(chat=True)
    for choices in [*chunks, None]:
        if choices is None:
            acc.add("[DONE]")
        else:
            acc.add(json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": choices}))
    if not acc.complete:
        return
    body = acc.body()
    assert storable(body, chat=True)  # what the stream path stores, the JSON path would too
    again = StreamAccumulator(chat=True)
    for event in replay_events(with_fresh_tool_call_ids(body), chat=True, include_usage=False):
        again.add(event.decode().removeprefix("data: ").strip())
    assert again.complete
    replayed = again.body()["choices"][0]["message"]
    stored = body["choices"][0]["message"]
    assert replayed["content"] == stored["content"]
    assert [c["function"] for c in replayed.get("tool_calls", [])] == [
        c["function"] for c in stored.get("tool_calls", [])
    ]
