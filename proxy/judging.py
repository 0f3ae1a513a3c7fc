"""The proxy's side of the sampled judge and of the shared example utilities.

``router.judge`` decides and compares; this module gives it what only the proxy
has: the large backend to ask, the embedder, the cache whose entries carry the
utility copy examples are ranked by, the tenant's privacy settings, and metrics.
The pipeline calls :func:`judge_small_answer` after a small backend answered a
routed miss: it returns at once and never touches the client's answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from backends.errors import EmbedderError, UpstreamError
from backends.pool import PoolReply
from backends.transport import BackendRequest
from cache import CacheError, EntryNotFound
from proxy.relay import record_usage
from proxy.services import Services
from proxy.wiring import build_judge_config
from router import (
    ExampleCandidate,
    Judge,
    JudgeCase,
    JudgeOutcome,
    JudgeUnavailable,
    SharedUtilities,
    UtilityStoreUnavailable,
    estimate_tokens,
)

log = logging.getLogger("cachegate.judge")

#: Request fields that only shape how the answer is delivered, not what it says.
_DELIVERY_FIELDS = ("stream", "stream_options", "n")


def answer_of(body: dict[str, Any] | None) -> str | None:
    """The text of a chat or text completion's single choice, if it has one."""
    try:
        choice = (body or {})["choices"][0]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(choice, dict):
        return None
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text if isinstance(text, str) and text else None


class JudgeCollector(Collector):
    """The judge's counts at scrape time."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge

    def collect(self) -> Iterator[Metric]:
        c = self.judge.counts
        total = CounterMetricFamily(
            "cachegate_judge_answers",
            "Small-model answers seen by the sampled judge, by what happened to them "
            "(capped: refused because max_in_flight judge calls were running; shed: "
            "not sent because the large tier was overloaded or down).",
            labels=["outcome"],
        )
        for outcome, value in (
            ("sampled", c.sampled),
            ("capped", c.capped),
            ("shed", c.shed),
            ("agreed", c.agreed),
            ("disagreed", c.disagreed),
            ("failed", c.failed),
        ):
            total.add_metric([outcome], value)
        records = CounterMetricFamily(
            "cachegate_judge_records", "Training records the judge wrote."
        )
        records.add_metric([], c.records)
        in_flight = GaugeMetricFamily("cachegate_judge_in_flight", "Judge calls running now.")
        in_flight.add_metric([], self.judge.in_flight)
        yield from (total, records, in_flight)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def build_judge(services: Services) -> Judge | None:
    """The judge when ``router.judge.enabled``, with its sinks and metrics."""
    config = build_judge_config(services.settings.router.judge)
    if not config.enabled:
        return None

    async def embed(texts: Sequence[str]) -> np.ndarray:
        try:
            return np.stack([await services.embedder.embed(t) for t in texts])
        except EmbedderError as exc:
            raise JudgeUnavailable(f"embedding the answers failed: {exc}") from exc

    async def credit_examples(outcome: JudgeOutcome) -> None:
        await credit(services, outcome.case.example_ids, float(outcome.verdict.small_ok))

    judge = Judge(config, sinks=[credit_examples], embed=embed)
    services.metrics.add_collector(JudgeCollector(judge))
    return judge


async def credit(services: Services, example_ids: Sequence[str], reward: float) -> int:
    """Adds one outcome to the shared utility of each example, then refreshes the
    cache entry's copy (what this replica ranks examples by until the next refresh).
    Returns how many examples were updated."""
    if not example_ids:
        return 0
    shared = services.shared_utilities
    if shared is not None:
        try:
            states = await shared.update_many(example_ids, reward)
        except UtilityStoreUnavailable as exc:
            log.warning("example utilities not updated: %s", exc)
            return 0
    else:  # no SQL store: this process's own Beta states
        states = {eid: services.utilities.update(eid, reward) for eid in example_ids}
    updated = 0
    cache = services.cache
    for eid, state in states.items():
        if cache is not None:
            try:
                await cache.set_utility(int(eid), state.mean)
            except (EntryNotFound, CacheError, ValueError) as exc:
                log.info("example %s utility not copied to the cache: %s", eid, exc)
                continue
        updated += 1
    return updated


def example_utility(services: Services, entry_id: int, cached: float) -> float:
    """The utility to rank an example by: the shared value when known, else the cache's."""
    shared = services.shared_utilities
    return cached if shared is None else shared.utility(str(entry_id), cached)


def judge_small_answer(
    services: Services,
    *,
    tenant: str,
    body: dict[str, Any],
    path: str,
    text: str,
    category: str,
    examples: Sequence[ExampleCandidate],
    neighbour_similarities: Sequence[float],
    reply: PoolReply,
) -> None:
    """Offers a routed small answer to the judge (a coin flip at ``sample_rate``).

    ``body`` is the client's request without the in-context examples: the large
    model answers what the client asked. Only complete JSON answers are judged;
    streamed ones are passed through untouched and never buffered for the judge.
    """
    judge = services.judge
    if judge is None or reply.backend.tier != "small" or reply.reply.json is None:
        return
    small_answer = answer_of(reply.reply.json)
    if small_answer is None or not judge.wants():
        return
    large = services.pool.first_available("large")
    if large is None or services.pool.tier_overloaded("large"):
        # Judge calls are optional load: never the reason the large tier looks busy
        # and the router moves other clients' requests off it.
        judge.counts.sampled += 1
        judge.counts.shed += 1
        return
    judge_body = {k: v for k, v in body.items() if k not in _DELIVERY_FIELDS}
    request = BackendRequest(path=path, body=judge_body, stream=False)

    async def ask_large() -> str:
        try:
            got = await services.pool.call(large, request, cross_tier=False)
        except UpstreamError as exc:
            raise JudgeUnavailable(f"large model call failed: {exc}") from exc
        answer_json = got.reply.json
        record_usage(services, got.backend, answer_json)  # the judge's cost is counted
        answer = answer_of(answer_json)
        if answer is None:
            raise JudgeUnavailable("the large model's answer has no text")
        return answer

    privacy = services.privacy.for_tenant(tenant)
    case = JudgeCase(
        tenant=tenant,
        prompt=text,
        small_answer=small_answer,
        category=category,
        prompt_tokens=estimate_tokens(text),
        example_ids=tuple(e.entry_id for e in examples),
        neighbour_similarities=tuple(neighbour_similarities),
        keep_prompt=privacy.request_log and privacy.store_prompts,
    )
    judge.offer(case, ask_large)


async def open_shared_utilities(services: Services, create_table: bool) -> None:
    """Example utilities on the ops store's database, refreshed in the background."""
    store = services.ops_store
    if store is None:
        return
    shared = SharedUtilities(store.engine, refresh_s=services.settings.router.utility_refresh_s)
    if create_table:
        try:
            await shared.create_table()
        except UtilityStoreUnavailable as exc:
            log.error("example utility table not created: %s", exc)
            return
    services.shared_utilities = shared
    # Returns at its next wait once ``stopping`` is set (never cancelled mid-query).
    services._reconnects.append(asyncio.create_task(shared.run(services.stopping)))
