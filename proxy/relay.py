"""Step 7-9 on the way back: relay the backend's answer, account for it, store it.

Only complete, successful, single answers are stored: a JSON body with one
choice that finished with ``stop`` with its text a string, or with well-formed
tool calls (finished with ``tool_calls`` or ``stop``; unless the category's
policy says ``cache_tool_calls: false``), or a stream that delivered ``[DONE]``
after such a choice. Errors, truncated (``length``) or cancelled streams, the
deprecated ``function_call``, ``n > 1`` and answers in another shape are never
cached.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from backends.backend import Backend, usage_of
from backends.errors import UpstreamError
from backends.pool import PoolReply
from cache import CacheError, CacheScope, CategoryPolicy, Flight, NewEntry, SharedAnswer
from proxy.errors import spec_for
from proxy.feedback import ResponseRecord
from proxy.services import Services
from proxy.streaming import DONE_EVENT, StreamAccumulator, error_event, tool_calls_ok
from proxy.trace import Trace, finish

log = logging.getLogger("cachegate.relay")


@dataclass(frozen=True)
class StoreIntent:
    store: bool
    tenant: str
    scope: CacheScope | None
    text: str
    vector: Any | None
    category: str
    policy: CategoryPolicy
    example_ids: tuple[int, ...] = ()
    asked_at_flush: int | None = None  # the cache's flush count at lookup (NewEntry's)
    # False for a follow-up or an agent step: its answer needs turns the question lacks,
    # so it is never shown as an in-context example (proxy.normalise.stands_alone).
    example_ok: bool = True
    # Set when this request leads a flight (cache.inflight): its storable answer is
    # shared with the equivalent requests waiting for it; any other end abandons it.
    flight: Flight | None = None


def record_usage(services: Services, backend: Backend, body: dict[str, Any] | None) -> None:
    prompt, completion = usage_of(body)
    cost = backend.record_usage(prompt, completion)
    m = services.metrics
    m.backend_tokens.labels(backend.name, "prompt").inc(prompt)
    m.backend_tokens.labels(backend.name, "completion").inc(completion)
    m.backend_cost.labels(backend.name).inc(cost)


def storable(body: dict[str, Any], chat: bool, *, tool_calls: bool = True) -> bool:
    """One choice holding text that finished with ``stop``, or (``tool_calls``)
    well-formed tool calls, in the shape a client reads.

    Shapes are checked, not assumed: an answer stored here is replayed to later
    clients, so a backend's malformed body (a ``content`` that is a number, a
    ``message`` that is null) must stay that one response's problem."""
    choices = body.get("choices")
    if "error" in body or not isinstance(choices, list) or len(choices) != 1:
        return False
    choice = choices[0]
    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
        return False
    finish = choice.get("finish_reason")
    if not chat:
        return finish == "stop" and isinstance(choice.get("text"), str)
    message = choice.get("message")
    if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
        return False
    if message.get("function_call"):
        return False
    content, calls = message.get("content"), message.get("tool_calls")
    if not calls:
        return finish == "stop" and isinstance(content, str)
    return (
        tool_calls
        and finish in ("tool_calls", "stop")
        and (content is None or isinstance(content, str))
        and tool_calls_ok(calls)
    )


class Relay:
    def __init__(self, services: Services, pr: PoolReply, trace: Trace, intent: StoreIntent):
        self.s = services
        self.pr = pr
        self.trace = trace
        self.intent = intent

    def json(self) -> dict[str, Any]:
        body = self.pr.reply.json or {}
        record_usage(self.s, self.pr.backend, body)
        self._outcome("ok")
        if self._storable(body):
            self._share(body)
            self._store(body)
        else:
            self._abandon()
        self._log(body.get("id"))
        finish(self.s, self.trace, 200)
        return body

    async def stream(self) -> AsyncIterator[bytes]:
        events = self.pr.reply.events
        assert events is not None
        acc = StreamAccumulator(chat=self.trace.endpoint == "chat")
        status = 200
        answer: dict[str, Any] | None = None  # the assembled answer, when complete
        try:
            async for data in events:
                acc.add(data)
                if acc.done:
                    break
                yield f"data: {data}\n\n".encode()
            if not acc.done:
                acc.broken = True
                yield error_event(
                    f"{self.pr.backend.name}: the backend's stream ended without [DONE]",
                    "upstream_error",
                    "backend_stream_broken",
                )
        except UpstreamError as exc:
            acc.broken = True
            spec = spec_for(exc)
            status = spec.status
            yield error_event(str(exc), spec.type, spec.code)
        finally:
            # Runs on client disconnect too (the generator is closed): the backend
            # request is cancelled and nothing partial is stored or shared. Followers
            # are released first, before anything here can fail or wait.
            whole = acc.body() if acc.complete else None
            if whole is not None and self._storable(whole):
                answer = whole
                self._share(answer)
            else:
                self._abandon()
            await _aclose(events)
            await self.pr.reply.close()
        record_usage(self.s, self.pr.backend, {"usage": acc.usage} if acc.usage else None)
        self._outcome("ok" if status == 200 else "stream_error")
        if answer is not None:
            self._store(answer)
        self._log(acc.id)
        finish(self.s, self.trace, status)
        yield DONE_EVENT

    def _storable(self, body: dict[str, Any]) -> bool:
        """The one rule for JSON answers and assembled streams alike."""
        chat = self.trace.endpoint == "chat"
        return storable(body, chat, tool_calls=self.intent.policy.cache_tool_calls)

    def _share(self, body: dict[str, Any]) -> None:
        flight = self.intent.flight
        if flight is None:
            return
        prompt, completion = usage_of(body)
        b = self.pr.backend
        flight.resolve(SharedAnswer(body, b.name, b.tier, prompt, completion))

    def _abandon(self) -> None:
        if self.intent.flight is not None:
            self.intent.flight.abandon()

    def _outcome(self, outcome: str) -> None:
        b = self.pr.backend
        self.s.metrics.backend_requests.labels(b.name, b.tier, outcome).inc()

    def _store(self, body: dict[str, Any]) -> None:
        i = self.intent
        cache = self.s.cache
        if not i.store or cache is None or i.scope is None or i.vector is None:
            return
        prompt, completion = usage_of(body)
        try:
            entry = NewEntry(
                scope=i.scope,
                category=i.category,
                text=i.text,
                vector=i.vector,
                response=body,
                backend=self.pr.backend.name,
                tier=self.pr.backend.tier,
                prompt_tokens=prompt,
                completion_tokens=completion,
                asked_at_flush=i.asked_at_flush,
                example_ok=i.example_ok,
            )
        except CacheError as exc:
            log.warning("answer not cached: %s", exc)
            return
        cache.submit(entry, i.policy)  # a drop is counted by the cache (write_drops metric)

    def _log(self, response_id: Any) -> None:
        if not isinstance(response_id, str) or not response_id:
            return
        i = self.intent
        self.s.responses.add(
            response_id,
            ResponseRecord(
                tenant=i.tenant,
                scope=i.scope,
                text=i.text,
                vector=i.vector,
                category=i.category,
                entry_id=None,
                example_ids=i.example_ids,
                tier=self.pr.backend.tier,
            ),
        )


async def _aclose(events: AsyncIterator[str]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
