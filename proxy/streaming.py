"""SSE on the client side: pass-through with accumulation, replay of cached answers.

Discipline: every event is ``data: …\\n\\n``; an error after the first byte
becomes an in-band error event; ``data: [DONE]`` is always last.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from backends.jsontext import loads_strict, repair, repair_text
from backends.sse import DONE, encode_event
from proxy.protocol import MAX_CHOICES

DONE_EVENT = encode_event(DONE)
T = TypeVar("T")


def _typed(value: Any, kind: type[T]) -> T | None:
    """``value`` if it is a ``kind`` (a bool is not an int here), else None."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    return None


#: Tool calls in one answer beyond which it is not stored (no model emits this many).
MAX_TOOL_CALLS = 128


def tool_calls_ok(calls: Any) -> bool:
    """A non-empty list of OpenAI function calls, each with an id, a name and its
    arguments as a string: the only tool-call shape that is stored and replayed."""
    if not isinstance(calls, list) or not 0 < len(calls) <= MAX_TOOL_CALLS:
        return False
    for call in calls:
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            return False
        function = call.get("function")
        if not isinstance(call.get("id"), str) or not call["id"] or not isinstance(function, dict):
            return False
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not name or not isinstance(arguments, str):
            return False
    return True


@dataclass
class _ToolCall:
    """One streamed tool call: its id and name arrive once, its arguments in pieces."""

    id: str | None = None
    name_parts: list[str] = field(default_factory=list)
    argument_parts: list[str] = field(default_factory=list)

    def add(self, delta: dict[str, Any]) -> bool:
        if delta.get("type", "function") not in ("function", None):
            return False
        call_id, function = delta.get("id"), delta.get("function") or {}
        if call_id is not None and not isinstance(call_id, str):
            return False
        if not isinstance(function, dict):
            return False
        name, arguments = function.get("name"), function.get("arguments")
        if any(x is not None and not isinstance(x, str) for x in (name, arguments)):
            return False
        self.id = self.id or call_id
        if name:
            self.name_parts.append(name)
        if arguments:
            self.argument_parts.append(arguments)
        return True

    def message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {
                "name": "".join(self.name_parts),
                "arguments": "".join(self.argument_parts),
            },
        }


@dataclass
class _Choice:
    role: str = "assistant"
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    legacy_call: bool = False  # the deprecated ``function_call``: relayed, never stored

    def add_tool_calls(self, deltas: Any) -> bool:
        if not isinstance(deltas, list):
            return False
        for delta in deltas:
            if not isinstance(delta, dict):
                return False
            index = delta.get("index", 0)
            if _typed(index, int) is None or not 0 <= index < MAX_TOOL_CALLS:
                return False
            if not self.tool_calls.setdefault(index, _ToolCall()).add(delta):
                return False
        return True


@dataclass
class StreamAccumulator:
    """Rebuilds the complete (non-streamed) response body from stream chunks."""

    chat: bool
    id: str | None = None
    model: str | None = None
    created: int | None = None
    usage: dict[str, Any] | None = None
    done: bool = False
    broken: bool = False
    choices: dict[int, _Choice] = field(default_factory=dict)

    def add(self, data: str) -> None:
        """Read one event; a chunk not in OpenAI's shape marks the answer broken
        (the client still gets it as sent, but it is never stored or replayed)."""
        if data == DONE:
            self.done = True
            return
        try:
            chunk = loads_strict(data)
        except (ValueError, RecursionError):
            self.broken = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.broken = True
            return
        self.id = self.id or _typed(chunk.get("id"), str)
        self.model = self.model or _typed(chunk.get("model"), str)
        self.created = self.created or _typed(chunk.get("created"), int)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            self.broken = True
            return
        for ch in choices:
            if not self._add_choice(ch):
                self.broken = True
                return

    def _add_choice(self, ch: Any) -> bool:
        if not isinstance(ch, dict):
            return False
        index, finish = ch.get("index", 0), ch.get("finish_reason")
        if _typed(index, int) is None or not 0 <= index < MAX_CHOICES:
            return False
        if finish is not None and not isinstance(finish, str):
            return False
        c = self.choices.setdefault(index, _Choice())
        if self.chat:
            delta = ch.get("delta") or {}
            if not isinstance(delta, dict):
                return False
            content = delta.get("content")
            if content is not None and not isinstance(content, str):
                return False
            if isinstance(delta.get("role"), str):
                c.role = delta["role"]
            if content:
                c.parts.append(content)
            if delta.get("tool_calls") and not c.add_tool_calls(delta["tool_calls"]):
                return False
            if delta.get("function_call"):
                c.legacy_call = True
        else:
            text = ch.get("text")
            if text is not None and not isinstance(text, str):
                return False
            if text:
                c.parts.append(text)
        if finish:
            c.finish_reason = finish
        return True

    @property
    def complete(self) -> bool:
        """A whole, successful, single answer: the only kind worth storing. Text that
        finished with ``stop``, or well-formed tool calls (``tool_calls`` or ``stop``)."""
        if not self.done or self.broken or len(self.choices) != 1:
            return False
        c = next(iter(self.choices.values()))
        if c.legacy_call:
            return False
        if not c.tool_calls:
            return c.finish_reason == "stop"
        calls = [t.message() for _, t in sorted(c.tool_calls.items())]
        return c.finish_reason in ("tool_calls", "stop") and tool_calls_ok(calls)

    @property
    def text(self) -> str:
        return repair_text("".join(self.choices[0].parts)) if 0 in self.choices else ""

    def body(self) -> dict[str, Any]:
        """The answer as one response; broken Unicode in the events (a lone surrogate
        escape, or a pair split across two events) is repaired here, so what is stored
        can be encoded. The client already got the events as the backend sent them."""
        choices: list[dict[str, Any]] = []
        for i, c in sorted(self.choices.items()):
            text = "".join(c.parts)
            if self.chat:
                message: dict[str, Any] = {"role": c.role, "content": text}
                if c.tool_calls:
                    message["content"] = text or None
                    message["tool_calls"] = [t.message() for _, t in sorted(c.tool_calls.items())]
                choices.append({"index": i, "message": message, "finish_reason": c.finish_reason})
            else:
                choices.append(
                    {"index": i, "text": text, "finish_reason": c.finish_reason, "logprobs": None}
                )
        out: dict[str, Any] = {
            "id": self.id or new_id(self.chat),
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created or int(time.time()),
            "model": self.model,
            "choices": choices,
        }
        if self.usage is not None:
            out["usage"] = self.usage
        repaired: dict[str, Any] = repair(out)
        return repaired


def new_id(chat: bool) -> str:
    return ("chatcmpl-cg-" if chat else "cmpl-cg-") + uuid.uuid4().hex[:24]


def with_fresh_tool_call_ids(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with new ids on its tool calls. A client answers a tool call by its id,
    and one conversation may replay the same stored call twice: ids stay unique, as a
    model's own are."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not any(
        isinstance(ch, dict)
        and isinstance(ch.get("message"), dict)
        and ch["message"].get("tool_calls")
        for ch in choices
    ):
        return body
    fresh = []
    for ch in choices:
        message = ch.get("message") if isinstance(ch, dict) else None
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
            calls = [
                {**call, "id": "call_cg" + uuid.uuid4().hex[:24]}
                if isinstance(call, dict)
                else call
                for call in message["tool_calls"]
            ]
            ch = {**ch, "message": {**message, "tool_calls": calls}}
        fresh.append(ch)
    return {**body, "choices": fresh}


def error_event(message: str, type_: str, code: str | None) -> bytes:
    payload = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return encode_event(json.dumps(payload))


def replay_events(
    body: dict[str, Any], *, chat: bool, include_usage: bool, piece_chars: int = 32
) -> list[bytes]:
    """A stored complete answer as a well-formed SSE stream ending in [DONE]."""
    rid, model, created = body.get("id"), body.get("model"), body.get("created")
    obj = "chat.completion.chunk" if chat else "text_completion"
    out: list[bytes] = []

    def emit(choice: dict[str, Any]) -> None:
        chunk = {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}
        out.append(encode_event(json.dumps(chunk)))

    for ch in body.get("choices") or []:
        index = ch.get("index", 0)
        if chat:
            message = ch.get("message") or {}
            text = message.get("content") or ""
            calls = message.get("tool_calls") or []
            first = "" if text or not calls else None  # OpenAI: null content before tool calls
            emit(
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": first},
                    "finish_reason": None,
                }
            )
            for start in range(0, len(text), piece_chars):
                piece = text[start : start + piece_chars]
                emit({"index": index, "delta": {"content": piece}, "finish_reason": None})
            for n, call in enumerate(calls):
                # As OpenAI streams them: id, type and name first, then the arguments.
                function = call["function"]
                head = {"index": n, "id": call["id"], "type": "function",
                        "function": {"name": function["name"], "arguments": ""}}  # fmt: skip
                emit({"index": index, "delta": {"tool_calls": [head]}, "finish_reason": None})
                arguments = function["arguments"]
                for start in range(0, len(arguments), piece_chars):
                    piece = {
                        "index": n,
                        "function": {"arguments": arguments[start : start + piece_chars]},
                    }
                    emit({"index": index, "delta": {"tool_calls": [piece]}, "finish_reason": None})
            emit({"index": index, "delta": {}, "finish_reason": ch.get("finish_reason", "stop")})
        else:
            text = ch.get("text") or ""
            for start in range(0, len(text), piece_chars):
                emit(
                    {
                        "index": index,
                        "text": text[start : start + piece_chars],
                        "finish_reason": None,
                    }
                )
            emit({"index": index, "text": "", "finish_reason": ch.get("finish_reason", "stop")})
    if include_usage and isinstance(body.get("usage"), dict):
        usage_chunk = {"id": rid, "object": obj, "created": created, "model": model}
        out.append(encode_event(json.dumps({**usage_chunk, "choices": [], "usage": body["usage"]})))
    out.append(DONE_EVENT)
    return out
