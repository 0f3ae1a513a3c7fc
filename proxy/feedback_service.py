"""Applying ``POST /v1/feedback``: cache entry removal and example utility."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cache import CacheError, EntryNotFound
from proxy.auth import Principal
from proxy.errors import NotFound, Unavailable
from proxy.judging import credit
from proxy.protocol import FeedbackRequest
from proxy.services import Services

log = logging.getLogger("cachegate.feedback")


@dataclass(frozen=True)
class FeedbackOutcome:
    entry_id: int | None
    removed: bool
    examples_updated: int


async def apply_feedback(s: Services, principal: Principal, fb: FeedbackRequest) -> FeedbackOutcome:
    record = s.responses.get(fb.response_id)
    if record is None or record.tenant != principal.tenant:
        # Another tenant's response id is as unknown as a made-up one.
        raise NotFound(f"no recent response with id '{fb.response_id}'", param="response_id")
    cache = s.cache
    entry_id = record.entry_id
    if cache is not None and entry_id is None and record.scope:
        await cache.flush()  # the answer may still sit in the write-behind queue
        # A miss's answer is stored under its exact key: no vector is needed to find it,
        # and finding it is not a cache hit (stats and LFU counts stay traffic-only).
        entry_id = cache.find_exact(record.scope, record.text)
    removed = False
    if cache is not None and entry_id is not None:
        try:
            removed = await cache.record_feedback(entry_id, float(fb.rating))
        except EntryNotFound:
            removed = fb.rating < 0  # already gone
        except CacheError as exc:
            log.warning("feedback not stored: %s", exc)
    if s.request_log is not None:
        try:
            await s.request_log.rate(principal.tenant, fb.response_id, float(fb.rating))
        except Unavailable as exc:
            log.info("rating not logged: %s", exc)
    updated = 0
    if cache is not None and record.example_ids:
        reward = (fb.rating + 1) / 2  # [-1, 1] → [0, 1]
        # Shared by replicas: an atomic SQL increment per example (proxy.judging).
        updated = await credit(s, [str(e) for e in record.example_ids], reward)
    return FeedbackOutcome(entry_id=entry_id, removed=removed, examples_updated=updated)
