"""The OpenAI-compatible endpoints: thin routes over services built in the lifespan."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from backends.errors import BackendError
from proxy.auth import Principal
from proxy.errors import InvalidRequest, NotFound, ProxyError, spec_for
from proxy.feedback_service import apply_feedback
from proxy.http import read_body, request_id
from proxy.pipeline import Pipeline
from proxy.protocol import EmbeddingRequest, FeedbackRequest, parse_json_body, validate
from proxy.services import Services
from proxy.trace import CacheControl, Endpoint, Trace, finish

router = APIRouter()

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def services(request: Request) -> Services:
    s: Services = request.app.state.services
    return s


def client(request: Request) -> Principal:
    return services(request).auth.client(request.headers.get("authorization"))


async def _completion(request: Request, endpoint: Endpoint) -> Response:
    s = services(request)
    principal = client(request)
    body = parse_json_body(await read_body(request, s.settings.server.max_body_bytes))
    trace = Trace(endpoint=endpoint, request_id=request_id(request), started=time.perf_counter())
    try:
        control = CacheControl.parse(request.headers.get("cache-control"))
        return await Pipeline(s).handle(
            principal, body, endpoint=endpoint, control=control, trace=trace
        )
    except (ProxyError, BackendError) as exc:
        # Failed requests are counted too (the handlers turn them into responses).
        finish(s, trace, spec_for(exc).status)
        raise


@router.post("/v1/chat/completions", openapi_extra=_BODY_DOC)
async def chat_completions(request: Request) -> Response:
    return await _completion(request, "chat")


@router.post("/v1/completions", openapi_extra=_BODY_DOC)
async def completions(request: Request) -> Response:
    return await _completion(request, "completion")


@router.post("/v1/embeddings", openapi_extra=_BODY_DOC)
async def embeddings(request: Request) -> Response:
    s = services(request)
    client(request)
    body = parse_json_body(await read_body(request, s.settings.server.max_body_bytes))
    req = validate(EmbeddingRequest, body)
    if req.model not in (s.embedder.name, "auto", "default"):
        raise NotFound(
            f"The embedding model '{req.model}' does not exist here. Available: {s.embedder.name}",
            param="model",
            code="model_not_found",
        )
    if req.dimensions is not None and req.dimensions != s.embedder.dim:
        raise InvalidRequest(
            f"dimensions={req.dimensions} is not available: {s.embedder.name} gives "
            f"{s.embedder.dim}-dimensional vectors only",
            param="dimensions",
        )
    texts = [req.input] if isinstance(req.input, str) else [str(t) for t in req.input]
    vectors = await s.embedder.embed_many(texts)
    data = []
    for i, vec in enumerate(vectors):
        if req.encoding_format == "base64":
            emb: Any = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
        else:
            emb = [float(x) for x in vec]
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = await s.embedder.count_tokens(texts)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": s.embedder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.api_route("/v1/responses", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/v1/responses/{rest:path}", methods=["GET", "POST", "DELETE"],
                  include_in_schema=False)  # fmt: skip
async def responses_api(request: Request) -> Response:
    """Not served: a clear 404 naming what to use instead, not a bare "Not Found" (the
    OpenAI Agents SDK calls the Responses API by default)."""
    raise NotFound(
        "cachegate serves /v1/chat/completions, /v1/completions and /v1/embeddings; the "
        "Responses API (/v1/responses) is not proxied. With the OpenAI Agents SDK, use "
        'chat completions: set_default_openai_api("chat_completions") or '
        "OpenAIChatCompletionsModel.",
        code="unsupported_endpoint",
    )


@router.get("/v1/models")
async def models(request: Request) -> Response:
    s = services(request)
    client(request)
    entries = [{"id": "auto", "object": "model", "created": 0, "owned_by": "cachegate"}]
    for b in s.pool.backends:
        for alias in dict.fromkeys((b.name, b.spec.model, *b.spec.aliases)):
            entries.append({"id": alias, "object": "model", "created": 0, "owned_by": b.name})
    entries.append(
        {"id": s.embedder.name, "object": "model", "created": 0, "owned_by": "cachegate"}
    )
    return JSONResponse({"object": "list", "data": entries})


@router.post("/v1/feedback", openapi_extra=_BODY_DOC)
async def feedback(request: Request) -> Response:
    """cachegate's own endpoint: rate an answer by its response id.

    A negative rating on an answer that is (or became) a cache entry removes that
    entry; a rating on an answer the small model gave with in-context examples
    updates those examples' learned utility.
    """
    s = services(request)
    principal = client(request)
    body = parse_json_body(await read_body(request, s.settings.server.max_body_bytes))
    fb = validate(FeedbackRequest, body)
    outcome = await apply_feedback(s, principal, fb)
    return JSONResponse(
        {
            "object": "feedback",
            "response_id": fb.response_id,
            "rating": fb.rating,
            "entry_id": outcome.entry_id,
            "entry_removed": outcome.removed,
            "examples_updated": outcome.examples_updated,
        }
    )
