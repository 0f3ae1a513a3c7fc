"""JSON text from outside (clients, backends): parsed strictly, broken Unicode handled.

Python's ``json.loads`` accepts ``NaN`` and ``Infinity``, which are not JSON: they
would reach a backend, a database column or a JSON response (Starlette refuses to
write them) later. :func:`loads_strict` refuses them where the text enters.

JSON may escape a character outside the Basic Multilingual Plane as a pair of
``\\uXXXX`` surrogate escapes; ``json.loads`` joins a pair into one character but
keeps a lone half (``"\\ud800"``) as a ``str`` that no UTF-8 encoder accepts, so
hashing, the tokenizer, the database and the next JSON response would each fail
on it. Requests holding one are refused (the client can fix its input); model
answers holding one are repaired, as a UTF-8 decoder repairs invalid bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

#: A ``\\uD800``-``\\uDFFF`` escape in raw JSON bytes. Escaped pairs (emoji) are
#: common and harmless, so this only says whether a walk of the parsed value is needed.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` without ``NaN``/``Infinity`` (ValueError, like any invalid JSON)."""
    return json.loads(text, parse_constant=_refuse_constant)


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, keys included."""
    # A stack, not recursion: json.loads accepts nesting close to the recursion limit.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a parsed JSON value (keys included) holds a lone surrogate."""
    return any(_SURROGATE.search(text) for text in strings(value))


def repair_text(text: str) -> str:
    """Join adjacent halves into their character (a stream may split a pair across
    events) and replace each remaining lone half with U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def repair(value: Any) -> Any:
    """A parsed JSON value with every string (keys too) passed through
    :func:`repair_text`; lists and dicts are repaired in place.

    A stack, not recursion, like :func:`strings`: json.loads accepts nesting close to
    the recursion limit, and a recursive walk started deeper in the call stack than
    the parse was would fail on it."""
    if isinstance(value, str):
        return repair_text(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            for i, v in enumerate(item):
                if isinstance(v, str):
                    item[i] = repair_text(v)
                elif isinstance(v, list | dict):
                    stack.append(v)
        elif isinstance(item, dict):
            pairs = list(item.items())
            item.clear()
            for k, v in pairs:
                if isinstance(v, str):
                    v = repair_text(v)
                elif isinstance(v, list | dict):
                    stack.append(v)
                item[repair_text(k) if isinstance(k, str) else k] = v
    return value
