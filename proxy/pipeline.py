"""Request orchestration for chat completions and completions (steps 1-9 of DESIGN.md).

normalise → embed once → classify → policy → lookup (exact, then HNSW +
equivalence) → on a miss route (small/large, with in-context examples for the
small model) → call the backend → store complete answers write-behind.
The cache fails open: an embedder or store failure turns into a bypass or a
miss, counted in metrics, never into an error for the client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from backends.backend import Backend, Tier
from backends.errors import EmbedderError, UpstreamError
from backends.transport import BackendRequest
from cache import (
    CacheError,
    CacheHit,
    CacheScope,
    CategoryPolicy,
    EntryNotFound,
    Flight,
    Follow,
    Neighbour,
    NewEntry,
    SharedAnswer,
)
from proxy.auth import Principal
from proxy.errors import InvalidRequest, NotCached, NotFound, Unavailable
from proxy.feedback import ResponseRecord
from proxy.judging import example_utility, judge_small_answer
from proxy.normalise import (
    agent_step,
    fingerprint,
    has_non_text_parts,
    question,
    question_index,
    stands_alone,
)
from proxy.protocol import ChatCompletionRequest, CompletionRequest, validate
from proxy.relay import Relay, StoreIntent
from proxy.request_log import account
from proxy.services import Services
from proxy.settings import LimitSettings
from proxy.streaming import new_id, replay_events, with_fresh_tool_call_ids
from proxy.trace import CacheControl, Endpoint, Trace, finish
from router import ExampleCandidate, RouteFeatures, TierLoad, build_messages, estimate_tokens
from router import select_examples as pick_examples

log = logging.getLogger("cachegate.pipeline")

# Leaders a miss may wait on in turn (each failed) before it calls a backend alone.
COALESCE_TRIES = 3


@dataclass
class Prepared:
    """A validated request on its way to a backend."""

    body: dict[str, Any]
    stream: bool
    include_usage: bool
    alias: str
    pinned: Backend | None
    single_choice: bool
    text_only: bool


@dataclass
class Understanding:
    """Steps 1-4: what the request asks, in which category, under which policy."""

    text: str  # the latest user turn (what is embedded, classified and looked up)
    vector: Any | None  # backends.Vector; None when nothing was embedded
    category: str
    policy: CategoryPolicy
    scope: CacheScope | None  # None: not cacheable


def check_bounds(
    body: dict[str, Any], req: ChatCompletionRequest | CompletionRequest, limits: LimitSettings
) -> None:
    """Refuses requests over the configured size bounds before any work is done."""
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise InvalidRequest(
            f"{len(messages)} messages is over the limit of {limits.max_messages}",
            param="messages",
            code="too_many_messages",
        )
    total = len(json.dumps(messages if messages is not None else body.get("prompt", "")))
    if total > limits.max_total_chars:
        raise InvalidRequest(
            f"the input has {total} characters, over the limit of {limits.max_total_chars}",
            param="messages" if messages is not None else "prompt",
            code="input_too_long",
        )
    ceiling = limits.max_tokens_ceiling
    asked = getattr(req, "max_completion_tokens", None) or req.max_tokens
    if ceiling is not None and asked is not None and asked > ceiling:
        param = "max_tokens" if req.max_tokens is not None else "max_completion_tokens"
        raise InvalidRequest(
            f"{param}={asked} is over this deployment's ceiling of {ceiling}",
            param=param,
            code="max_tokens_too_large",
        )


#: The backend name of answers an operator stored (``POST /admin/cache/entries``).
SEED_BACKEND = "operator"


@dataclass(frozen=True)
class Seeded:
    """An answer stored by :meth:`Pipeline.seed`."""

    entry_id: int
    category: str
    text: str  # the question it answers, as looked up
    replaced: int | None  # the entry it took the place of


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def handle(
        self,
        principal: Principal,
        body: dict[str, Any],
        *,
        endpoint: Endpoint,
        control: CacheControl,
        trace: Trace,
    ) -> Response:
        """Usage limits first (429 before any work), the tenant's privacy settings,
        then the request; limits are charged and the request logged once it is sent."""
        if self.s.limits is not None:  # the key's and the tenant's bounds and limits
            self.s.limits.admit_request(principal.tenant, principal.key_id, body)
        if not self.s.privacy.for_tenant(principal.tenant).cache:
            control = CacheControl(no_cache=True, no_store=True)
        response = await self._serve(principal, body, endpoint, control, trace)
        return account(self.s, principal.tenant, body, trace, response, key=principal.key_id)

    async def _serve(
        self,
        principal: Principal,
        body: dict[str, Any],
        endpoint: Endpoint,
        control: CacheControl,
        trace: Trace,
    ) -> Response:
        # Taken before the lookup: a flush from now on covers this request's answer.
        asked_at_flush = self.s.cache.flushes if self.s.cache is not None else None
        prepared = self._prepare(body, endpoint)
        if not control.no_cache:
            early = await self._exact_first(principal, prepared, trace, control.max_age_s)
            if early is not None:
                return early
        u = await self._understand(principal, prepared, trace)
        if u.scope is not None and not control.no_cache:
            hit = await self._lookup(u, trace, control.max_age_s)
            if hit is not None:
                return self._hit_response(hit, prepared, principal, u, trace)
        if control.only_if_cached:
            raise NotCached(
                "no cached answer for this request, and Cache-Control: only-if-cached "
                "forbids asking a backend",
                param="cache-control",
            )
        joined = await self._coalesce(principal, prepared, u, control, trace)
        if isinstance(joined, Response):
            return joined
        try:
            return await self._call(principal, prepared, u, control, trace, joined, asked_at_flush)
        except BaseException:
            if joined is not None:  # followers go on without this request's answer
                joined.abandon()
            raise

    async def _call(
        self,
        principal: Principal,
        prepared: Prepared,
        u: Understanding,
        control: CacheControl,
        trace: Trace,
        flight: Flight | None,
        asked_at_flush: int | None,
    ) -> Response:
        """Steps 6-9: route, call the backend, relay (and store) its answer."""
        body, endpoint = prepared.body, trace.endpoint
        primary, cross_tier, neighbours = await self._route(principal, prepared, u, trace)
        examples = self._examples(principal, prepared, u, primary.tier, neighbours, trace)
        send_body = prepared.body
        if examples and endpoint == "chat":
            send_body = {**prepared.body, "messages": build_messages(body["messages"], examples)}
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        request = BackendRequest(path=path, body=send_body, stream=prepared.stream)
        started = time.perf_counter()
        m = self.s.metrics
        try:
            pr = await self.s.pool.call(primary, request, cross_tier=cross_tier)
        except UpstreamError:
            m.backend_requests.labels(primary.name, primary.tier, "error").inc()
            raise
        trace.backend = pr.backend.name
        if pr.fell_back:
            trace.route = "fallback"
            m.backend_requests.labels(primary.name, primary.tier, "error").inc()
            m.fallbacks.labels(primary.tier, pr.backend.tier).inc()
        self.s.metrics.stage_duration.labels("backend_ttft").observe(time.perf_counter() - started)
        if self.s.judge is not None and prepared.pinned is None and not pr.fell_back:
            judge_small_answer(  # a coin flip; judged in the background, never waited on
                self.s, tenant=principal.tenant, body=prepared.body, path=path, text=u.text,
                category=u.category, examples=examples, reply=pr,
                neighbour_similarities=[n.similarity for n in neighbours],
            )  # fmt: skip
        intent = self._store_intent(
            principal, prepared, u, control, examples, flight, asked_at_flush
        )
        relay = Relay(self.s, pr, trace, intent)
        if pr.reply.events is not None:
            return StreamingResponse(
                relay.stream(),
                media_type="text/event-stream",
                headers={**trace.headers(), "Cache-Control": "no-cache"},
            )
        return JSONResponse(relay.json(), headers=trace.headers())

    # -- 1. validate ----------------------------------------------------------

    def _prepare(self, body: dict[str, Any], endpoint: Endpoint) -> Prepared:
        if endpoint == "chat":
            req: ChatCompletionRequest | CompletionRequest = validate(ChatCompletionRequest, body)
            # The turn whose text is looked up must be all text (an image question's
            # text alone is not the question); later tool results are fingerprinted whole.
            asked = question_index(body["messages"])
            last = body["messages"][-1 if asked is None else asked]
            text_only = not has_non_text_parts(last.get("content"))
        else:
            req = validate(CompletionRequest, body)
            text_only = isinstance(body.get("prompt"), str)
        check_bounds(body, req, self.s.settings.limits)
        pinned = self.s.pool.resolve(req.model)
        if req.model != "auto" and pinned is None:
            known = ", ".join(["auto", *self.s.pool.aliases])
            raise NotFound(
                f"The model '{req.model}' does not exist here. Available models: {known}",
                param="model",
                code="model_not_found",
            )
        opts = req.stream_options or {}
        return Prepared(
            body=body,
            stream=bool(req.stream),
            include_usage=bool(opts.get("include_usage")),
            alias=req.model,
            pinned=pinned,
            single_choice=(req.n or 1) == 1,
            text_only=text_only,
        )

    # -- an answer given by an operator (POST /admin/cache/entries) ---------------------

    async def seed(
        self,
        principal: Principal,
        body: dict[str, Any],
        endpoint: Endpoint,
        answer: str,
        category: str | None = None,
    ) -> Seeded:
        """Stores ``answer`` as the cached answer to the request ``body``, under the scope,
        category and policy the request path gives it (``category``: this one instead of
        the classifier's), replacing an entry stored for the same text in that scope.
        Raises InvalidRequest when such a request would not be cached, and Unavailable
        when the cache cannot take it."""
        body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        p = self._prepare(body, endpoint)
        cache = self.s.cache
        if cache is None or not cache.serving:
            raise Unavailable("the cache is not available; nothing was stored")
        if not self.s.privacy.for_tenant(principal.tenant).cache:
            raise InvalidRequest(f"tenant {principal.tenant!r} does not use the cache")
        if not p.text_only or not p.single_choice:
            raise InvalidRequest(
                "only a single-choice request whose question is text alone is cached",
                param="request",
            )
        u = await self._understand(principal, p, Trace(endpoint=endpoint, request_id="seed"))
        if category is not None and category != u.category:
            policy = self.s.effective_policy(category)
            scope = CacheScope(principal.tenant, p.alias, fingerprint(body, policy.sampling_params))
            u = Understanding(u.text, u.vector, category, policy, scope)
        if not u.text:
            raise InvalidRequest("the request asks nothing (no user turn)", param="request")
        if u.vector is None:
            raise Unavailable("the question could not be embedded; nothing was stored")
        if u.scope is None or not u.policy.enabled:
            raise InvalidRequest(
                f"caching is off for category {u.category!r}; nothing was stored",
                param="category",
            )
        chat = endpoint == "chat"
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": answer},
             "finish_reason": "stop"}
            if chat
            else {"index": 0, "text": answer, "logprobs": None, "finish_reason": "stop"}
        )  # fmt: skip
        prompt, completion = estimate_tokens(u.text), estimate_tokens(answer)
        response = {
            "id": new_id(chat),
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": p.alias,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        entry = NewEntry(
            scope=u.scope,
            category=u.category,
            text=u.text,
            vector=u.vector,
            response=response,
            backend=SEED_BACKEND,
            tier="large",  # an operator's answer: as good as the strong model's (examples)
            prompt_tokens=prompt,
            completion_tokens=completion,
            example_ok=stands_alone(body),
        )
        replaced = cache.find_exact(u.scope, u.text)
        if not cache.submit(entry, u.policy):
            raise Unavailable("the cache's write queue is full; nothing was stored")
        await cache.flush()
        stored = cache.find_exact(u.scope, u.text)
        if stored is None or stored == replaced:
            raise Unavailable("the answer could not be written to the cache store")
        if replaced is not None:
            with contextlib.suppress(EntryNotFound):  # deleted meanwhile: as well
                await cache.delete(replaced)
        return Seeded(stored, u.category, u.text, replaced)

    # -- 5a. exact repeats, before any embedding ------------------------------------

    async def _exact_first(
        self, principal: Principal, p: Prepared, trace: Trace, max_age_s: int | None
    ) -> Response | None:
        """Serves an exact repeat from the exact tier without embedding or classifying.

        The scope's fingerprint depends on the category's sampling parameters, which are
        not known before classifying; so the exact key is tried once per distinct set of
        them among the enabled policies (usually one). A stored entry names its category,
        whose policy must still use that set and allow this request (streams), as the
        full path would, and must have been stored since the categories last changed.
        Anything else (no entry, expired, disabled) goes the full way, which counts the
        lookup; this path only counts its hits."""
        cache = self.s.cache
        if cache is None or not cache.serving or not p.text_only or not p.single_choice:
            return None
        text, _ = question(p.body)
        if not text:
            return None
        started = time.perf_counter()
        policies = self.s.policies
        param_sets = {tuple(sorted(pol.sampling_params)) for pol in policies.values()}
        param_sets.add(tuple(sorted(policies.for_category("general").sampling_params)))
        changed = self.s.classifier.changed_at if self.s.classifier is not None else 0.0
        for params in sorted(param_sets):

            def policy_for(
                category: str, params: tuple[str, ...] = params
            ) -> CategoryPolicy | None:
                policy = self.s.effective_policy(category)
                if tuple(sorted(policy.sampling_params)) != params:
                    return None
                return policy if policy.cache_streams or not p.stream else None

            scope = CacheScope(principal.tenant, p.alias, fingerprint(p.body, params))
            try:
                hit = await cache.exact_lookup(
                    scope, text, policy_for, stored_after=changed, max_age_s=max_age_s
                )
            except CacheError as exc:
                log.warning("exact lookup failed, going the full way: %s", exc)
                return None
            if hit is None:
                continue
            policy = self.s.effective_policy(hit.category)
            trace.category, trace.cache = hit.category, "hit"
            m = self.s.metrics
            m.stage_duration.labels("lookup").observe(time.perf_counter() - started)
            m.cache_lookups.labels(hit.category, "hit").inc()
            u = Understanding(text, None, hit.category, policy, scope)
            return self._hit_response(hit, p, principal, u, trace)
        return None

    # -- 2-4. embed, classify, policy ------------------------------------------

    async def _understand(self, principal: Principal, p: Prepared, trace: Trace) -> Understanding:
        text, context = question(p.body)
        policies = self.s.policies
        if not text or not p.text_only:
            return Understanding(text, None, "general", policies.for_category("general"), None)
        m = self.s.metrics
        started = time.perf_counter()
        try:
            vector = await self.s.embedder.embed(text)
        except EmbedderError as exc:
            log.warning("embedding failed, bypassing the cache: %s", exc)
            m.cache_errors.labels("embed").inc()
            return Understanding(text, None, "general", policies.for_category("general"), None)
        classified = time.perf_counter()
        m.stage_duration.labels("embed").observe(classified - started)
        category = "general"
        if self.s.classifier is not None:
            result = self.s.classifier.classify(vector, text, context=context)
            category = result.category
            m.stage_duration.labels("classify").observe(time.perf_counter() - classified)
        trace.category = category
        policy = self.s.effective_policy(category)
        cacheable = (
            self.s.cache is not None
            and self.s.cache.serving  # not once another embedder took over the store
            and policy.enabled
            and p.single_choice
            and (policy.cache_streams or not p.stream)
        )
        scope = None
        if cacheable:
            # The fingerprint covers the sampling parameters this category's policy names.
            scope = CacheScope(
                principal.tenant, p.alias, fingerprint(p.body, policy.sampling_params)
            )
        return Understanding(text, vector, category, policy, scope)

    # -- 5. lookup --------------------------------------------------------------

    async def _lookup(
        self, u: Understanding, trace: Trace, max_age_s: int | None
    ) -> CacheHit | None:
        cache = self.s.cache
        assert cache is not None and u.scope is not None and u.vector is not None
        m = self.s.metrics
        started = time.perf_counter()
        try:
            hit = await cache.lookup(
                u.scope, u.text, u.vector, u.category, u.policy, max_age_s=max_age_s
            )
        except CacheError as exc:
            log.warning("cache lookup failed, treating as a miss: %s", exc)
            m.cache_errors.labels("lookup").inc()
            m.cache_lookups.labels(u.category, "error").inc()
            trace.cache = "miss"
            return None
        m.stage_duration.labels("lookup").observe(time.perf_counter() - started)
        trace.cache = "hit" if hit is not None else "miss"
        m.cache_lookups.labels(u.category, trace.cache).inc()
        return hit

    def _hit_response(
        self,
        hit: CacheHit,
        p: Prepared,
        principal: Principal,
        u: Understanding,
        trace: Trace,
    ) -> Response:
        answer = SharedAnswer(
            hit.response, hit.backend, hit.tier, hit.prompt_tokens, hit.completion_tokens
        )
        record = ResponseRecord(
            principal.tenant, u.scope, u.text, u.vector, u.category, hit.entry_id
        )
        now = self.s.cache.clock() if self.s.cache is not None else time.time()
        age = max(0, int(now - hit.created_at))
        return self._answer(answer, hit.similarity, record, p, u, trace, age_s=age)

    def _answer(
        self,
        answer: SharedAnswer,
        similarity: float,
        record: ResponseRecord,
        p: Prepared,
        u: Understanding,
        trace: Trace,
        *,
        age_s: int | None = None,
    ) -> Response:
        """A stored (or in-flight) answer served without a backend call of its own.
        ``age_s``: how long ago a stored answer was stored (the ``Age`` header)."""
        m = self.s.metrics
        trace.cache = "hit"
        trace.similarity = similarity
        trace.backend = answer.backend
        m.hit_similarity.labels(u.category).observe(similarity)
        m.tokens_saved.labels("prompt").inc(answer.prompt_tokens)
        m.tokens_saved.labels("completion").inc(answer.completion_tokens)
        origin = self.s.pool.resolve(answer.backend)
        if origin is not None:
            m.cost_saved.inc(origin.spec.price.cost(answer.prompt_tokens, answer.completion_tokens))
        body = with_fresh_tool_call_ids(dict(answer.response))
        body["id"] = new_id(trace.endpoint == "chat")
        body["created"] = int(time.time())
        self.s.responses.add(body["id"], record)
        finish(self.s, trace, 200)
        headers = trace.headers()
        if record.entry_id is not None:
            headers["x-cachegate-entry"] = str(record.entry_id)
        if age_s is not None:
            headers["Age"] = str(age_s)
        if not p.stream:
            return JSONResponse(body, headers=headers)
        events = replay_events(body, chat=trace.endpoint == "chat", include_usage=p.include_usage)

        async def replay() -> Any:
            for event in events:
                yield event

        return StreamingResponse(
            replay(),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )

    # -- 5b. single-flight: wait for an equivalent request already at a backend ------

    async def _coalesce(
        self,
        principal: Principal,
        p: Prepared,
        u: Understanding,
        control: CacheControl,
        trace: Trace,
    ) -> Response | Flight | None:
        """A miss that the cache would answer with an in-flight request's answer waits
        for it (cache.inflight) and is served it as a hit. Otherwise the flight this
        request leads (its answer will be shared), or ``None``: it goes alone.

        A failed leader releases its followers, which try again: one leads, the rest
        follow it. After a few failed leaders a request goes alone."""
        inflight = self.s.inflight
        if inflight is None or u.scope is None or u.vector is None:
            return None
        cfg = self.s.settings.cache.coalesce
        follow = not control.no_cache and (cfg.streams or not p.stream)
        lead = not control.no_store  # a no-store answer is not shared either
        m = self.s.metrics
        for _ in range(COALESCE_TRIES):
            ticket = inflight.enter(
                u.scope, u.text, u.vector, u.policy,
                follow=follow, lead=lead, request_id=trace.request_id,
            )  # fmt: skip
            if not isinstance(ticket, Follow):
                return ticket
            started = time.perf_counter()
            answer = await ticket.wait(inflight.clock)
            m.stage_duration.labels("coalesce_wait").observe(time.perf_counter() - started)
            if answer is None:
                m.coalesced.labels(u.category, "retried" if ticket.flight.done else "timeout").inc()
                continue
            m.coalesced.labels(u.category, "served").inc()
            trace.coalesced = ticket.flight.leader
            # Feedback on this answer reaches the entry the leader stored (its text).
            record = ResponseRecord(
                principal.tenant, u.scope, ticket.flight.text, None, u.category, None,
                tier=answer.tier,
            )  # fmt: skip
            return self._answer(answer, ticket.similarity, record, p, u, trace)
        return None

    # -- 6. route -----------------------------------------------------------------

    async def _route(
        self, principal: Principal, p: Prepared, u: Understanding, trace: Trace
    ) -> tuple[Backend, bool, list[Neighbour]]:
        """The backend to try first, whether the other tier may take over, and the
        neighbours found for routing features and examples.

        A pinned alias never silently changes tier: the client asked for that model.
        """
        pool = self.s.pool
        if p.pinned is not None:
            trace.route = "pinned"
            if self.s.adaptive is not None:
                self.s.adaptive.shares.record(u.category, p.pinned.tier)
            return p.pinned, False, []
        neighbours = await self._neighbours(principal, u)
        load = {
            t: TierLoad(healthy=pool.tier_available(t), overloaded=pool.tier_overloaded(t))
            for t in ("small", "large")
            if pool.has_tier(t)
        }
        tier: Tier
        started = time.perf_counter()
        if self.s.router is not None and u.vector is not None and len(load) == 2:
            features = RouteFeatures(
                vector=u.vector,
                category=u.category,
                prompt_tokens=estimate_tokens(u.text),
                neighbour_similarities=tuple(n.similarity for n in neighbours),
                neighbour_utilities=tuple(n.utility for n in neighbours),
            )
            decision = self.s.router.decide(features, load)
            tier, trace.router_score = decision.tier, decision.score
            if decision.score is not None:
                self.s.router_scores.append(decision.score)  # for calibration from traffic
            trace.route = "router" if decision.reason == "pinned" else decision.reason
        else:
            tier = "small" if "small" in load else "large"
            trace.route = "router"
            other: Tier = "large" if tier == "small" else "small"
            if other in load and not load[tier].healthy and load[other].healthy:
                tier, trace.route = other, "fallback"
        self.s.metrics.stage_duration.labels("router").observe(time.perf_counter() - started)
        self.s.metrics.router_decisions.labels(tier, trace.route).inc()
        if self.s.adaptive is not None:
            self.s.adaptive.shares.record(u.category, tier)
        backend = pool.first_available(tier)
        assert backend is not None  # the tier exists: load was built from it
        return backend, True, neighbours

    async def _neighbours(self, principal: Principal, u: Understanding) -> list[Neighbour]:
        cache = self.s.cache
        if cache is None or u.vector is None or self.s.router is None:
            return []
        cfg = self.s.examples
        try:
            return await cache.neighbours(
                principal.tenant, u.vector, max(cfg.k, 5), cfg.similarity_floor, tier="large"
            )
        except CacheError as exc:
            log.warning("neighbour search failed: %s", exc)
            self.s.metrics.cache_errors.labels("neighbours").inc()
            return []

    def _examples(
        self,
        principal: Principal,
        p: Prepared,
        u: Understanding,
        tier: Tier,
        neighbours: list[Neighbour],
        trace: Trace,
    ) -> tuple[ExampleCandidate, ...]:
        if tier != "small" or p.pinned is not None or not neighbours or "messages" not in p.body:
            return ()
        if agent_step(p.body):
            return ()  # an agent step answers from its tool results, not from examples
        candidates = [
            ExampleCandidate(
                entry_id=str(n.entry_id),
                tenant=principal.tenant,
                request_text=n.request_text,
                answer_text=n.answer_text,
                similarity=max(-1.0, min(1.0, n.similarity)),
                utility=max(0.0, min(1.0, example_utility(self.s, n.entry_id, n.utility))),
                tier=n.tier,
            )
            for n in neighbours
            if n.example_ok
        ]
        chosen = pick_examples(
            candidates,
            tenant=principal.tenant,
            category=u.category,
            config=self.s.examples,
            count_tokens=estimate_tokens,
        )
        trace.examples = len(chosen)
        return chosen

    # -- 8. what to store ---------------------------------------------------------

    def _store_intent(
        self,
        principal: Principal,
        p: Prepared,
        u: Understanding,
        control: CacheControl,
        examples: tuple[ExampleCandidate, ...],
        flight: Flight | None,
        asked_at_flush: int | None,
    ) -> StoreIntent:
        store = u.scope is not None and u.vector is not None and not control.no_store
        return StoreIntent(
            store=store,
            tenant=principal.tenant,
            scope=u.scope,
            text=u.text,
            vector=u.vector,
            category=u.category,
            policy=u.policy,
            example_ids=tuple(int(e.entry_id) for e in examples),
            asked_at_flush=asked_at_flush,
            example_ok=stands_alone(p.body),
            flight=flight,
        )
