"""Step 1 of the request path: the cacheable text and the context fingerprint.

The cacheable text is what gets embedded, classified and looked up: the latest
user turn. Everything else that changes the answer goes into the fingerprint
(a digest), so a hit is only possible when all of it matches: the endpoint,
system/developer prompts, every earlier turn, tools and tool choice,
``response_format``, and the sampling parameters the category's policy names.

An agent loop's later step is a question too: a conversation that ends in tool
results, after the latest user turn was answered only with tool calls. Its text
is still that user turn; the calls and results after it go into the fingerprint
verbatim, so a hit needs the very same calls and results (a paraphrased question
with the same results is the same step). Tool-call ids are opaque correlators
that differ in every session (cachegate's replayed calls get fresh ones): the
fingerprint reads them as their order of appearance, which keeps which result
answers which call.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Always part of the fingerprint: they change the shape of the answer itself.
STRUCTURAL_FIELDS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logit_bias",
    "stop",
    "n",
    "logprobs",
    "top_logprobs",
    "suffix",
    "echo",
    # What the answer holds or how hard the model works on it: an answer with audio, or
    # reasoned at another effort, or after a web search, is another answer.
    "modalities",
    "audio",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
    "parallel_tool_calls",
)


@dataclass(frozen=True)
class Normalised:
    text: str  # the latest user turn, as text ('' when there is none)
    context: tuple[str, ...]  # earlier user turns' texts, oldest first (classifier context)
    fingerprint: str


def content_text(content: Any) -> str:
    """Text of a message's content (string, or the text parts of a list)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def has_non_text_parts(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") not in (None, "text") for p in content
    )


def clean(text: str) -> str:
    """Unicode-normalised, whitespace-collapsed text (meaning preserved: case kept)."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _digest(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _last_user(messages: list[Any]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user":
            return i
    return None


def _tool_step(tail: list[Any]) -> bool:
    """Whether the turns after the latest user turn are tool calls and their results,
    ending in a result: an agent loop's next step, which asks for an answer."""
    if not tail or not isinstance(tail[-1], dict) or tail[-1].get("role") != "tool":
        return False
    for m in tail:
        if not isinstance(m, dict):
            return False
        role = m.get("role")
        if role == "assistant" and not m.get("tool_calls"):
            return False  # the question was already answered in text
        if role not in ("assistant", "tool"):
            return False
    return True


def question_index(messages: list[Any]) -> int | None:
    """The index of the user turn a chat asks about: the last message, or the latest
    user turn when only tool calls and results follow it; None when it asks nothing
    (it ends in an assistant turn, say)."""
    last_user = _last_user(messages)
    if last_user is None:
        return None
    if last_user == len(messages) - 1 or _tool_step(messages[last_user + 1 :]):
        return last_user
    return None


def agent_step(body: Mapping[str, Any]) -> bool:
    """Whether a chat asks its latest user turn again after tool calls and their results:
    its answer rests on those results, which its text does not show."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    asked = question_index(messages)
    return asked is not None and asked < len(messages) - 1


_CONVERSATION_ROLES = frozenset({"user", "assistant", "tool", "function"})


def stands_alone(body: Mapping[str, Any]) -> bool:
    """Whether the question's answer reads right with only the question beside it: no
    earlier user or assistant turn, no tool results after it. A follow-up ("and in
    Python?") or an agent step shown as an in-context example would teach the small
    model an answer whose premise the example does not show. System and developer
    prompts do not count: they shape the wording, not what is asked."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return True  # a completion prompt is all there is
    asked = question_index(messages)
    if asked is None or asked < len(messages) - 1:
        return False
    return not any(
        isinstance(m, dict) and m.get("role") in _CONVERSATION_ROLES for m in messages[:asked]
    )


def question(body: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The cacheable text and the earlier user turns (chat or completion body)."""
    if "messages" not in body:
        prompt = body.get("prompt")
        return (clean(prompt) if isinstance(prompt, str) else ""), ()
    messages = list(body.get("messages") or [])
    last_user = _last_user(messages)
    asked = question_index(messages)
    text = "" if asked is None else clean(content_text(messages[asked].get("content")))
    earlier = messages[:last_user] if last_user is not None else messages
    context = tuple(
        clean(content_text(m.get("content")))
        for m in earlier
        if isinstance(m, dict) and m.get("role") == "user"
    )
    return text, context


def fingerprint(body: Mapping[str, Any], sampling_params: Iterable[str] = ()) -> str:
    """Digest of everything besides the question that changes the answer."""
    payload: dict[str, Any] = {
        **{f: body.get(f) for f in STRUCTURAL_FIELDS if body.get(f) is not None},
        "sampling": {p: body.get(p) for p in sorted(sampling_params)},
    }
    if "messages" in body:
        messages = _ordinal_call_ids(list(body.get("messages") or []))
        last_user = _last_user(messages)
        earlier = messages[:last_user] if last_user is not None else messages
        payload["endpoint"] = "chat"
        payload["earlier"] = [_message_key(m) for m in earlier]
        if last_user is not None and last_user < len(messages) - 1:
            # An agent step: the user turn's own fields, then the calls and results.
            payload["last_meta"] = _message_key(messages[last_user], with_content=False)
            payload["tool_step"] = [_step_key(m) for m in messages[last_user + 1 :]]
        else:
            payload["last_meta"] = (
                _message_key(messages[-1], with_content=False) if messages else None
            )
    else:
        payload["endpoint"] = "completion"
    return _digest(payload)


def _step_key(m: Any) -> Any:
    """An agent step's message as what the model reads: for the assistant's calls, the
    content and each call's id, name and arguments. Clients echo the response's other
    fields back or not (``refusal: null``, ``annotations: []``) as their SDK has it."""
    if not isinstance(m, dict) or m.get("role") != "assistant":
        return _message_key(m)
    calls = m.get("tool_calls")
    if not isinstance(calls, list):
        return _message_key(m)
    content = m.get("content")
    keys: list[Any] = []
    for c in calls:
        function = c.get("function") if isinstance(c, dict) else None
        if not isinstance(function, dict):
            keys.append(c)
            continue
        keys.append([c.get("id"), function.get("name"), function.get("arguments")])
    text = clean(content) if isinstance(content, str) else content
    return {"role": "assistant", "content": text or None, "tool_calls": keys}


def _ordinal_call_ids(messages: list[Any]) -> list[Any]:
    """``messages`` with each tool-call id replaced by its order of first appearance
    (``#0``, ``#1`` …), in the assistant's calls and in the results that answer them."""
    ids: dict[str, str] = {}

    def ordinal(call_id: Any) -> Any:
        if not isinstance(call_id, str):
            return call_id
        return ids.setdefault(call_id, f"#{len(ids)}")

    out: list[Any] = []
    for m in messages:
        if not isinstance(m, dict):
            out.append(m)
            continue
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            m = {**m, "tool_calls": [
                {**c, "id": ordinal(c.get("id"))} if isinstance(c, dict) and "id" in c else c
                for c in calls
            ]}  # fmt: skip
        if "tool_call_id" in m:
            m = {**m, "tool_call_id": ordinal(m["tool_call_id"])}
        out.append(m)
    return out


def normalise_chat(body: Mapping[str, Any], sampling_params: Iterable[str] = ()) -> Normalised:
    text, context = question(body)
    return Normalised(text=text, context=context, fingerprint=fingerprint(body, sampling_params))


def normalise_completion(
    body: Mapping[str, Any], sampling_params: Iterable[str] = ()
) -> Normalised:
    text, _ = question(body)
    return Normalised(text=text, context=(), fingerprint=fingerprint(body, sampling_params))


def _message_key(m: Any, with_content: bool = True) -> Any:
    if not isinstance(m, dict):
        return m
    key = {k: v for k, v in m.items() if k != "content" or with_content}
    if with_content and "content" in key:
        key["content"] = (
            clean(key["content"]) if isinstance(key["content"], str) else key["content"]
        )
    return key
