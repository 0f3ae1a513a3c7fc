"""Step 1 of the request path: the cacheable text and the context fingerprint.

The cacheable text is what gets embedded, classified and looked up: the latest
user turn. Everything else that changes the answer goes into the fingerprint
(a digest), so a hit is only possible when all of it matches: the endpoint,
system/developer prompts, every earlier turn, tools and tool choice,
``response_format``, and the sampling parameters the category's policy names.
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


def question(body: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The cacheable text and the earlier user turns (chat or completion body)."""
    if "messages" not in body:
        prompt = body.get("prompt")
        return (clean(prompt) if isinstance(prompt, str) else ""), ()
    messages = list(body.get("messages") or [])
    last_user = _last_user(messages)
    # A conversation that ends in a tool result or assistant turn is not a question.
    if last_user is None or last_user != len(messages) - 1:
        text = ""
    else:
        text = clean(content_text(messages[last_user].get("content")))
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
        messages = list(body.get("messages") or [])
        last_user = _last_user(messages)
        earlier = messages[:last_user] if last_user is not None else messages
        payload["endpoint"] = "chat"
        payload["earlier"] = [_message_key(m) for m in earlier]
        payload["last_meta"] = _message_key(messages[-1], with_content=False) if messages else None
    else:
        payload["endpoint"] = "completion"
    return _digest(payload)


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
