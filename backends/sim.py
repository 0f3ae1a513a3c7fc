"""A simulated OpenAI-compatible model server, for the embedded default, tests and benchmarks.

Its models are called ``sim-small`` and ``sim-large`` so nobody mistakes it for
a real one. Answers are deterministic and name the prompt they answer (a
digest of the last user message), latency follows a simple model (time to
first token + per-token time), concurrency can be bounded (requests queue,
as on a saturated GPU server), and faults can be injected at start or at run
time through ``POST /sim/config``. ``GET /sim/requests`` shows what it received.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class SimProfile:
    model: str
    ttft_s: float
    per_token_s: float
    answer_tokens: int = 24


PROFILES = {
    "small": SimProfile("sim-small", ttft_s=0.030, per_token_s=0.004),
    "large": SimProfile("sim-large", ttft_s=0.080, per_token_s=0.012),
}


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0  # share of requests answered 500
    throttle_rate: float = 0.0  # share answered 429
    disconnect_after: int | None = None  # streams: close the socket after N chunks
    hang: bool = False  # never answer
    trickle_s: float = 0.0  # extra delay between stream chunks (slow-loris)
    latency_scale: float = 1.0  # multiplies the profile's latency (0: instant)
    max_concurrency: int | None = None  # queue requests beyond this many
    hold: bool = False  # requests wait (after being received) until hold is turned off
    #: answers end in broken Unicode as JSON escapes: a lone surrogate, and in streams
    #: an emoji's surrogate pair split across two events (BROKEN_TAIL / BROKEN_EVENTS)
    broken_unicode: bool = False
    #: answer with this text as the JSON body, or (streams) these events' data, then
    #: [DONE]: a backend's malformed answer, verbatim
    raw_answer: str | None = None
    raw_events: list[str] | None = None
    seed: int = 0


BROKEN_TAIL = " \ud800 \U0001f600"
BROKEN_EVENTS = (" \ud83d", "\ude00", " \ud800")


@dataclass
class SimState:
    profile: SimProfile
    faults: Faults
    rng: random.Random
    received: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    served: int = 0
    peak_in_flight: int = 0
    in_flight: int = 0
    semaphore: asyncio.Semaphore | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set: not holding


SIM_STATE: web.AppKey[SimState] = web.AppKey("sim_state", SimState)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def last_user_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        for m in reversed(body.get("messages") or []):
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def _tool_results(body: dict[str, Any]) -> str:
    """The tool results a chat ends in ('' when it ends in another turn)."""
    results: list[str] = []
    for m in reversed(body.get("messages") or []):
        if not isinstance(m, dict) or m.get("role") != "tool":
            break
        results.append(json.dumps(m.get("content")))
    return " ".join(reversed(results))


def tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call the simulated model makes, or None: a chat that offers function tools
    and ends in a user turn gets a call to the first one (or the one ``tool_choice``
    forces; none with ``tool_choice: "none"``), its arguments naming the question."""
    tools, choice, messages = (
        body.get("tools"),
        body.get("tool_choice", "auto"),
        body.get("messages"),
    )
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if not isinstance(messages, list) or not messages:
        return None
    if not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    names = [
        t["function"]["name"]
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]  # fmt: skip
    forced = choice.get("function") if isinstance(choice, dict) else None
    name = forced.get("name") if isinstance(forced, dict) else (names[0] if names else None)
    if not isinstance(name, str) or not name:
        return None
    arguments = json.dumps({"query": last_user_text(body)})
    return {
        # Random, as models' ids are: a cache cannot count on seeing one twice.
        "id": "call_" + uuid.uuid4().hex[:24],
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def answer_text(model: str, body: dict[str, Any], n_tokens: int, choice: int = 0) -> str:
    """Deterministic answer: names the model and a digest of the prompt it answers (and
    of the tool results, for a chat that ends in them)."""
    prompt = last_user_text(body) + _tool_results(body)
    head = f"[{model}] answer to {digest(prompt)}"
    if choice:
        head += f" (choice {choice})"
    words = [head + ":"]
    seed = int(digest(prompt + str(choice)), 16)
    vocab = ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "lambda")
    while len(words) < max(1, n_tokens):
        words.append(vocab[seed % len(vocab)])
        seed //= 3
        if seed == 0:
            seed = len(words) * 7919
    return " ".join(words[: max(1, n_tokens)])


def _prompt_tokens(body: dict[str, Any]) -> int:
    text = json.dumps(body.get("messages", body.get("prompt", "")))
    return max(1, len(text) // 4)


def _answer_tokens(state: SimState, body: dict[str, Any]) -> int:
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    n = state.profile.answer_tokens
    return min(n, limit) if isinstance(limit, int) and limit > 0 else n


def _finish_reason(state: SimState, n_tokens: int) -> str:
    """``length`` when max_tokens cut the answer short, as real servers report it."""
    return "length" if n_tokens < state.profile.answer_tokens else "stop"


def _error(status: int, message: str, type_: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": type_, "param": None, "code": None}}, status=status
    )


async def _completion(request: web.Request) -> web.StreamResponse:
    state: SimState = request.app[SIM_STATE]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "invalid JSON", "invalid_request_error")
    if not isinstance(body, dict):
        return _error(400, "body must be an object", "invalid_request_error")
    chat = request.path.endswith("/chat/completions")
    state.received.append({"path": request.path, "body": body, "headers": dict(request.headers)})
    if state.semaphore is not None:
        async with state.semaphore:
            return await _serve(request, state, body, chat)
    return await _serve(request, state, body, chat)


async def _serve(
    request: web.Request, state: SimState, body: dict[str, Any], chat: bool
) -> web.StreamResponse:
    faults = state.faults
    state.in_flight += 1
    state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
    try:
        if faults.hang:
            await asyncio.sleep(3600)
        await state.released.wait()  # tests order arrivals with ``hold``
        faults = state.faults
        roll = state.rng.random()
        if roll < faults.error_rate:
            return _error(500, "simulated server error", "server_error")
        if roll < faults.error_rate + faults.throttle_rate:
            return _error(429, "simulated rate limit", "rate_limit_error")
        n_tokens = _answer_tokens(state, body)
        scale = faults.latency_scale
        await asyncio.sleep(state.profile.ttft_s * scale)
        state.served += 1
        if body.get("stream") and faults.raw_events is not None:
            return await _raw_stream(request, faults.raw_events)
        if faults.raw_answer is not None and not body.get("stream"):
            return web.Response(text=faults.raw_answer, content_type="application/json")
        if body.get("stream"):
            return await _stream(request, state, body, chat, n_tokens)
        await asyncio.sleep(state.profile.per_token_s * scale * n_tokens)
        return web.json_response(_full_body(state, body, chat, n_tokens))
    finally:
        state.in_flight -= 1


def _full_body(state: SimState, body: dict[str, Any], chat: bool, n_tokens: int) -> dict[str, Any]:
    model = state.profile.model
    raw_n = body.get("n")
    n = raw_n if isinstance(raw_n, int) and raw_n > 0 else 1
    created = int(time.time())
    rid = "simcmpl-" + digest(json.dumps(body, sort_keys=True) + str(state.served))
    choices: list[dict[str, Any]] = []
    call = tool_call(body) if chat else None
    if call is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choices = [{"index": 0, "message": message, "finish_reason": "tool_calls"}]
        n = 0  # one call, whatever n asked
    for i in range(n):
        text = answer_text(model, body, n_tokens, i)
        if state.faults.broken_unicode:
            text += BROKEN_TAIL
        if chat:
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": _finish_reason(state, n_tokens),
                }
            )
        else:
            choices.append(
                {
                    "index": i,
                    "text": text,
                    "finish_reason": _finish_reason(state, n_tokens),
                    "logprobs": None,
                }
            )
    return {
        "id": rid,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": _prompt_tokens(body),
            "completion_tokens": n_tokens * n,
            "total_tokens": _prompt_tokens(body) + n_tokens * n,
        },
    }


async def _stream(
    request: web.Request, state: SimState, body: dict[str, Any], chat: bool, n_tokens: int
) -> web.StreamResponse:
    model = state.profile.model
    faults = state.faults
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    rid = "simcmpl-" + digest(json.dumps(body, sort_keys=True) + str(state.served))
    words = answer_text(model, body, n_tokens).split(" ")
    created = int(time.time())

    def chunk(delta: str | None, finish: str | None) -> dict[str, Any]:
        if chat:
            d: dict[str, Any] = {} if delta is None else {"content": delta}
            choice: dict[str, Any] = {"index": 0, "delta": d, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}
            obj = "text_completion"
        return {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}

    events: list[dict[str, Any]] = []
    call = tool_call(body) if chat else None
    if call is not None:
        # As OpenAI streams a call: id and name first, then the arguments in pieces.
        head = {"index": 0, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
        first = chunk(None, None)
        first["choices"][0]["delta"] = {"role": "assistant", "content": None, "tool_calls": [head]}
        events.append(first)
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 8):
            piece = {"index": 0, "function": {"arguments": arguments[start : start + 8]}}
            event = chunk(None, None)
            event["choices"][0]["delta"] = {"tool_calls": [piece]}
            events.append(event)
        events.append(chunk(None, "tool_calls"))
    else:
        if chat:
            first = chunk("", None)
            first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            events.append(first)
        events += [chunk(w if i == 0 else " " + w, None) for i, w in enumerate(words)]
        if faults.broken_unicode:
            events += [chunk(piece, None) for piece in BROKEN_EVENTS]
        events.append(chunk(None, _finish_reason(state, n_tokens)))
    opts = body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage"):
        pt = _prompt_tokens(body)
        usage = {"prompt_tokens": pt, "completion_tokens": n_tokens, "total_tokens": pt + n_tokens}
        events.append({**chunk(None, None), "choices": [], "usage": usage})
    for i, event in enumerate(events):
        if faults.disconnect_after is not None and i >= faults.disconnect_after:
            transport = request.transport
            if transport is not None:
                transport.abort()  # drop the connection mid-stream, no terminating chunk
            return resp
        await resp.write(f"data: {json.dumps(event)}\n\n".encode())
        await asyncio.sleep(state.profile.per_token_s * faults.latency_scale + faults.trickle_s)
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def _raw_stream(request: web.Request, events: list[str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for data in [*events, "[DONE]"]:
        await resp.write(f"data: {data}\n\n".encode())
    await resp.write_eof()
    return resp


async def _models(request: web.Request) -> web.Response:
    state: SimState = request.app[SIM_STATE]
    model = {
        "id": state.profile.model,
        "object": "model",
        "created": 0,
        "owned_by": "cachegate-sim",
    }
    return web.json_response({"object": "list", "data": [model]})


async def _get_requests(request: web.Request) -> web.Response:
    state: SimState = request.app[SIM_STATE]
    return web.json_response(
        {
            "received": list(state.received),
            "served": state.served,
            "in_flight": state.in_flight,
            "peak_in_flight": state.peak_in_flight,
        }
    )


async def _set_config(request: web.Request) -> web.Response:
    state: SimState = request.app[SIM_STATE]
    try:
        changes = await request.json()
        allowed = {f.name for f in fields(Faults)}
        unknown = set(changes) - allowed
        if unknown:
            return _error(400, f"unknown fault fields: {sorted(unknown)}", "invalid_request_error")
        configure(state, replace(state.faults, **changes))
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc), "invalid_request_error")
    return web.json_response(asdict(state.faults))


async def _reset(request: web.Request) -> web.Response:
    state: SimState = request.app[SIM_STATE]
    state.received.clear()
    state.served = 0
    state.peak_in_flight = 0
    return web.json_response({"ok": True})


def configure(state: SimState, faults: Faults) -> None:
    state.faults = faults
    state.rng = random.Random(faults.seed)
    state.semaphore = asyncio.Semaphore(faults.max_concurrency) if faults.max_concurrency else None
    if faults.hold:
        state.released.clear()
    else:
        state.released.set()


def make_sim_app(
    profile: str | SimProfile = "small", faults: Faults | None = None
) -> web.Application:
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    state = SimState(profile=prof, faults=Faults(), rng=random.Random(0))
    configure(state, faults or Faults())
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[SIM_STATE] = state
    app.router.add_post("/v1/chat/completions", _completion)
    app.router.add_post("/v1/completions", _completion)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/sim/requests", _get_requests)
    app.router.add_post("/sim/config", _set_config)
    app.router.add_post("/sim/reset", _reset)
    return app


class SimServer:
    """Runs a simulated backend in the current event loop (tests, embedded default)."""

    def __init__(
        self,
        profile: str | SimProfile = "small",
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = make_sim_app(profile, faults)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    @property
    def state(self) -> SimState:
        state: SimState = self.app[SIM_STATE]
        return state

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    async def start(self) -> SimServer:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def run_sim(profile: str, host: str, port: int, faults: Faults) -> None:
    web.run_app(make_sim_app(profile, faults), host=host, port=port, access_log=None, print=None)
