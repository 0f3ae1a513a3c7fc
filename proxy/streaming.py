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


@dataclass
class _Choice:
    role: str = "assistant"
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    has_tool_calls: bool = False


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
            if delta.get("tool_calls") or delta.get("function_call"):
                c.has_tool_calls = True
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
        """A whole, successful, single answer: the only kind worth storing."""
        return (
            self.done
            and not self.broken
            and len(self.choices) == 1
            and all(
                c.finish_reason == "stop" and not c.has_tool_calls for c in self.choices.values()
            )
        )

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
                choices.append(
                    {
                        "index": i,
                        "message": {"role": c.role, "content": text},
                        "finish_reason": c.finish_reason,
                    }
                )
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
            emit(
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": ""},
                    "finish_reason": None,
                }
            )
            for start in range(0, len(text), piece_chars):
                piece = text[start : start + piece_chars]
                emit({"index": index, "delta": {"content": piece}, "finish_reason": None})
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
