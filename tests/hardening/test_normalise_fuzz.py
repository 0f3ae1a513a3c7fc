"""Property tests of the normaliser: never raises on JSON-ish input; the fingerprint
follows exactly what changes an answer."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.normalise import clean, content_text, normalise_chat, normalise_completion

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
role = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", ""])
content = st.text(max_size=40) | st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=20)}
    ),
    max_size=3,
)
message = st.fixed_dictionaries({"role": role, "content": content}) | json_value
messages = st.lists(message, max_size=6)
words = st.text(alphabet="abcdefghij ", min_size=1, max_size=20).filter(lambda t: t.strip())
FAST = settings(max_examples=150, deadline=None)


@FAST
@given(body=st.dictionaries(st.text(max_size=10), json_value, max_size=6), msgs=json_value)
def test_never_raises_on_arbitrary_json(body: dict[str, Any], msgs: Any) -> None:
    for candidate in (body, {**body, "messages": msgs}, {**body, "prompt": msgs}):
        try:
            chat = normalise_chat(candidate)
        except TypeError:
            # Only a non-list "messages" may be refused; validation rejects those first.
            assert not isinstance(candidate.get("messages"), list | type(None))
            continue
        assert isinstance(chat.text, str) and len(chat.fingerprint) == 64
        completion = normalise_completion(candidate)
        assert isinstance(completion.text, str)
    assert isinstance(content_text(msgs), str)
    assert isinstance(clean(str(msgs)), str)


@FAST
@given(msgs=messages, sampling=st.lists(st.sampled_from(["temperature", "top_p", "seed"])))
def test_equal_inputs_equal_fingerprints(msgs: list[Any], sampling: list[str]) -> None:
    body = {"model": "auto", "messages": msgs, "temperature": 0.5}
    copy = {"messages": [dict(m) if isinstance(m, dict) else m for m in msgs], "temperature": 0.5}
    assert normalise_chat(body, sampling) == normalise_chat(copy, sampling)


@FAST
@given(question=words, system=words, other_system=words, earlier=words, tool=words)
def test_context_changes_the_fingerprint(
    question: str, system: str, other_system: str, earlier: str, tool: str
) -> None:
    user = {"role": "user", "content": question}
    base = normalise_chat({"messages": [{"role": "system", "content": system}, user]})
    assert base.text == clean(question)
    if clean(system) != clean(other_system):
        changed = normalise_chat({"messages": [{"role": "system", "content": other_system}, user]})
        assert changed.fingerprint != base.fingerprint
    history = [{"role": "system", "content": system}, {"role": "user", "content": earlier}]
    with_turn = normalise_chat(
        {"messages": [*history, {"role": "assistant", "content": "ok"}, user]}
    )
    assert with_turn.fingerprint != base.fingerprint
    tools = [{"type": "function", "function": {"name": tool.strip() or "f"}}]
    with_tools = normalise_chat(
        {"messages": [{"role": "system", "content": system}, user], "tools": tools}
    )
    assert with_tools.fingerprint != base.fingerprint
    fmt = normalise_chat(
        {
            "messages": [{"role": "system", "content": system}, user],
            "response_format": {"type": "json_object"},
        }
    )
    assert fmt.fingerprint != base.fingerprint
    # Fields that change what the answer holds or how it is reasoned: one answer each.
    for field, value in (
        ("modalities", ["text", "audio"]),
        ("reasoning_effort", "high"),
        ("web_search_options", {}),
    ):
        other = normalise_chat(
            {"messages": [{"role": "system", "content": system}, user], field: value}
        )
        assert other.fingerprint != base.fingerprint, field
    # Whitespace and Unicode form of the question do not change anything.
    spaced = normalise_chat(
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"  {question} "},
            ]
        }
    )
    assert spaced == base


@FAST
@given(
    prompt=words,
    sampling=st.sampled_from(["temperature", "seed"]),
    a=st.integers(0, 5),
    b=st.integers(0, 5),
)
def test_sampling_parameters_named_by_policy(prompt: str, sampling: str, a: int, b: int) -> None:
    one = normalise_completion({"prompt": prompt, sampling: a}, [sampling])
    two = normalise_completion({"prompt": prompt, sampling: b}, [sampling])
    assert (one.fingerprint == two.fingerprint) == (a == b)
    unnamed = normalise_completion({"prompt": prompt, sampling: b}, [])
    assert unnamed.fingerprint == normalise_completion({"prompt": prompt}, []).fingerprint


def _agent_step(question: str, ids: list[str], results: list[str]) -> dict[str, Any]:
    calls = [
        {"id": i, "type": "function", "function": {"name": f"f{n}", "arguments": "{}"}}
        for n, i in enumerate(ids)
    ]
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": calls},
            *(
                {"role": "tool", "tool_call_id": i, "content": r}
                for i, r in zip(ids, results, strict=True)
            ),
        ]
    }


@FAST
@given(
    question=words,
    ids=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=3, unique=True),
    renamed=st.lists(st.text(min_size=1, max_size=8), min_size=3, max_size=3, unique=True),
    results=st.lists(words, min_size=3, max_size=3),
)
def test_agent_steps_ignore_call_ids_but_not_which_result_answers_which_call(
    question: str, ids: list[str], renamed: list[str], results: list[str]
) -> None:
    results = results[: len(ids)]
    step = normalise_chat(_agent_step(question, ids, results))
    assert step.text == clean(question)  # the step asks the user's question
    # Other ids, consistently renamed: the same step.
    assert normalise_chat(_agent_step(question, renamed[: len(ids)], results)) == step
    # Another result: another step.
    changed = [*results[:-1], results[-1] + " more"]
    assert normalise_chat(_agent_step(question, ids, changed)).fingerprint != step.fingerprint
    # The results answering the other calls (ids swapped on the results only).
    if results[0] != results[1]:
        body = _agent_step(question, ids, results)
        tool_msgs = [m for m in body["messages"] if m["role"] == "tool"]
        tool_msgs[0]["tool_call_id"], tool_msgs[1]["tool_call_id"] = ids[1], ids[0]
        assert normalise_chat(body).fingerprint != step.fingerprint
    # Not the same context as the question asked on its own.
    alone = normalise_chat({"messages": [{"role": "user", "content": question}]})
    assert alone.text == step.text and alone.fingerprint != step.fingerprint
    # Ending in the assistant's text (the step answered) asks nothing.
    answered = _agent_step(question, ids, results)
    answered["messages"].append({"role": "assistant", "content": "done"})
    assert normalise_chat(answered).text == ""
