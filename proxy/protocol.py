"""Request models for the OpenAI endpoints, in OpenAI's field order.

Fields cachegate does not know are kept (``extra="allow"``) and passed to the
backend untouched. cachegate's own extras are fenced at the bottom of each
model and documented there; they are removed before the backend call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backends.jsontext import SURROGATE_ESCAPE, has_lone_surrogate, loads_strict
from proxy.errors import InvalidRequest

#: The most choices one request may ask for (``n``).
MAX_CHOICES = 128


class _OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatCompletionRequest(_OpenAIModel):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    # --- cachegate extras (none on the wire yet; per-request cache control is
    # the standard ``Cache-Control`` header: ``no-cache`` skips the lookup,
    # ``no-store`` skips the write).


class CompletionRequest(_OpenAIModel):
    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    user: str | None = None


class EmbeddingRequest(_OpenAIModel):
    input: str | list[str] | list[int] | list[list[int]]
    model: str = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _text_only(cls, v: Any) -> Any:
        if isinstance(v, list) and v and not all(isinstance(x, str) for x in v):
            raise ValueError("token-id input is not supported; send text")
        if v == "" or v == [] or (isinstance(v, list) and any(x == "" for x in v)):
            raise ValueError("input must not be empty")
        return v


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback`` (cachegate's own endpoint)."""

    model_config = ConfigDict(extra="forbid")
    response_id: str = Field(min_length=1, max_length=200)
    rating: int = Field(ge=-1, le=1, description="-1 bad, 0 neutral, 1 good")
    comment: str | None = Field(None, max_length=2000)


M = TypeVar("M", bound=BaseModel)


def parse_json_body(raw: bytes) -> dict[str, Any]:
    try:
        data = loads_strict(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            f"could not parse the JSON body of your request ({exc}); "
            "the body must be a JSON object",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise InvalidRequest(
            "the JSON body of your request is nested too deeply", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("the JSON body must be an object", code="invalid_json")
    if SURROGATE_ESCAPE.search(raw) and has_lone_surrogate(data):
        raise InvalidRequest(
            "the JSON body holds a lone UTF-16 surrogate escape (\\uD800-\\uDFFF "
            "without its pair); strings must be valid Unicode",
            code="invalid_json",
        )
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, message = describe(exc.errors())
        param = ".".join(str(p) for p in loc) or None
        where = f"'{param}'" if param else "the body"
        raise InvalidRequest(f"invalid value for {where}: {message}", param=param) from None


#: How pydantic names the branches of a union in an error's location.
_BRANCH = re.compile(r"^(str|int|float|bool|none|[a-z]+\[.*\])$")
_KINDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "dict[str,any]": "an object",
    "list[str]": "a list of strings",
    "list[int]": "a list of token ids",
    "list[list[int]]": "a list of token-id lists",
    "list[dict[str,any]]": "a list of content parts",
}


def describe(errors: Sequence[Any]) -> tuple[tuple[str | int, ...], str]:
    """Where a body is wrong and what was expected, in the client's terms.

    A union field (``content: str | list[...]``) fails once per branch, each error
    located under the branch's type name ("messages.0.content.str"). Those names
    are dropped; a value that got inside a branch (a list whose item is wrong) is
    reported at the item, one that fits no branch as "expected a string or ..."."""
    if not errors:
        return (), "invalid request"

    def place(err: Any) -> tuple[str | int, ...]:
        return tuple(p for p in err["loc"] if not (isinstance(p, str) and _BRANCH.match(p)))

    at = place(errors[0])
    same = [e for e in errors if place(e)[: len(at)] == at]
    deepest = max(same, key=lambda e: len(place(e)))
    if len(same) == 1 or len(place(deepest)) > len(at):
        return place(deepest), str(deepest["msg"])
    branches = [p for e in same for p in e["loc"][len(at) :] if isinstance(p, str)]
    kinds = list(dict.fromkeys(_KINDS.get(b, b) for b in branches if _BRANCH.match(b)))
    return at, "expected " + " or ".join(kinds) if kinds else str(errors[0]["msg"])
