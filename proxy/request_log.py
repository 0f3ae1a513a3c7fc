"""The request log (router training data) and the accounting done once an answer is sent.

A row per answered request of a tenant whose privacy settings allow it: time,
category, cache result, tier and backend, router score, token counts, the
response id (so ``POST /v1/feedback`` can rate it later) and the prompt text only
where the tenant allows prompts to be stored. Rows are queued and written in
batches off the request path (a full queue or a store outage drops rows,
counted in ``cachegate_request_log_drops_total``) and swept after
``privacy.log_retention_s``.

:func:`account` wraps a finished response: when its last byte is sent it
charges the tenant's and the key's limits (completion tokens, cost at the backend's prices;
hits cost nothing) and queues the log row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CollectorRegistry, Counter

from backends.backend import usage_of
from proxy.errors import Unavailable
from proxy.limits_store import ID_CHARS, OpsStore, request_log
from proxy.normalise import normalise_chat, normalise_completion
from proxy.settings import PrivacySettings, Settings
from proxy.streaming import StreamAccumulator

if TYPE_CHECKING:  # services imports this module; types only here
    from proxy.services import Services
    from proxy.trace import Trace

log = logging.getLogger("cachegate.request_log")
R = request_log.c
BATCH = 256
WRITE_EVERY_S = 0.25
SWEEP_EVERY_S = 60.0
# How long a deleted tenant's mark is kept: a request of theirs still running after this
# long (a stream over an hour) is logged. Marks are few (one per deletion) and small.
FORGET_FOR_S = 3600.0


@dataclass(frozen=True)
class LogRow:
    tenant: str
    at: float
    category: str
    cache: str
    tier: str | None
    backend: str | None
    router_score: float | None
    prompt: str | None
    prompt_tokens: int
    completion_tokens: int
    response_id: str | None
    # When the request arrived (time.perf_counter): not a column; a row of a request that
    # arrived before its tenant was deleted is dropped (RequestLog.forget).
    started: float = field(default_factory=time.perf_counter, compare=False)

    def columns(self) -> dict[str, Any]:
        row = asdict(self)
        del row["started"]
        return row


class RequestLog:
    """Held on ``Services.request_log``; :meth:`run` writes and sweeps until cancelled."""

    def __init__(
        self,
        store: OpsStore,
        settings: PrivacySettings,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention_s = settings.log_retention_s
        self.clock = clock
        self.queue: asyncio.Queue[LogRow] = asyncio.Queue(maxsize=settings.log_queue_size)
        self.written = 0
        self.drops = Counter(
            "cachegate_request_log_drops",
            "Request log rows not stored: queue full, store unreachable, or tenant deleted.",
            ["reason"],
            registry=registry,
        )
        self._last_sweep = 0.0
        self.store_ok = True
        self._forgotten: dict[str, float] = {}  # tenant -> perf_counter() at its deletion

    def forget(self, tenant: str) -> None:
        """Rows of ``tenant``'s requests that arrived before now are dropped from here on:
        a request in flight when its tenant is deleted finishes after the rows were
        deleted, and must not write its row back."""
        now = time.perf_counter()
        self._forgotten = {t: at for t, at in self._forgotten.items() if now - at < FORGET_FOR_S}
        self._forgotten[tenant] = now

    def _forgets(self, row: LogRow) -> bool:
        mark = self._forgotten.get(row.tenant)
        return mark is not None and row.started <= mark

    def add(self, row: LogRow) -> bool:
        if self._forgets(row):
            self.drops.labels("tenant_deleted").inc()
            return False
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            self.drops.labels("queue_full").inc()
            return False
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        """Writes what is queued every ``WRITE_EVERY_S`` and sweeps old rows until
        ``stopping`` is set (then :meth:`flush` writes the rest). It returns at its next
        wait rather than being cancelled: a write abandoned half-way would finish on the
        driver's thread after the loop closed."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), WRITE_EVERY_S)
            while not self.queue.empty():
                rows = [self.queue.get_nowait() for _ in range(min(BATCH, self.queue.qsize()))]
                await self._write(rows)
            if not stopping.is_set() and self.clock() - self._last_sweep >= SWEEP_EVERY_S:
                self._last_sweep = self.clock()
                try:
                    await self.sweep()
                    self.store_ok = True
                except Unavailable as exc:
                    self.store_ok = False
                    log.warning("request log sweep failed: %s", exc)

    async def _write(self, rows: list[LogRow]) -> None:
        kept = [r for r in rows if not self._forgets(r)]  # queued before a deletion
        if len(kept) < len(rows):
            self.drops.labels("tenant_deleted").inc(len(rows) - len(kept))
        try:
            if kept:
                await self.store.insert_log(r.columns() for r in kept)
            self.written += len(kept)
            self.store_ok = True
        except Unavailable as exc:
            self.store_ok = False
            self.drops.labels("store_error").inc(len(kept))
            log.warning("%d request log rows dropped: %s", len(kept), exc)
        finally:
            for _ in rows:
                self.queue.task_done()

    async def flush(self) -> None:
        """Writes what is queued now (also usable while :meth:`run` is not running)."""
        while not self.queue.empty():
            rows = [self.queue.get_nowait() for _ in range(min(BATCH, self.queue.qsize()))]
            await self._write(rows)
        await self.queue.join()

    async def close(self) -> None:
        """Writes what is queued; when the store is known to be down the rows are
        dropped (and counted) without another connection attempt."""
        if self.store_ok:
            await self.flush()
            return
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
            self.drops.labels("store_error").inc()

    async def sweep(self) -> int:
        """Deletes rows older than the retention period; returns how many."""
        cutoff = self.clock() - self.retention_s
        async with self.store.begin() as conn:
            result = await conn.execute(sa.delete(request_log).where(R.at < cutoff))
            return int(result.rowcount or 0)

    async def rate(self, tenant: str, response_id: str, rating: float) -> bool:
        """Records feedback on a logged response (False when no row has that id).
        Writes the queue first: the row of a just-answered request may still be in it."""
        await self.flush()
        stmt = (
            sa.update(request_log)
            .where(R.tenant == tenant, R.response_id == response_id)
            .values(rating=rating, rated_at=self.clock())
        )
        async with self.store.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def rows(
        self, tenant: str | None = None, *, offset: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        where = sa.true() if tenant is None else R.tenant == tenant
        stmt = sa.select(request_log).where(where).order_by(R.id).offset(offset).limit(limit)
        async with self.store.begin() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    async def rows_after(self, tenant: str, after_id: int, limit: int) -> list[dict[str, Any]]:
        """One page of ``tenant``'s rows with ids above ``after_id`` (keyset paging: an
        export reads page after page without an offset scan or a long transaction)."""
        stmt = (
            sa.select(request_log)
            .where(R.tenant == tenant, R.id > after_id)
            .order_by(R.id)
            .limit(limit)
        )
        async with self.store.begin() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    async def delete_tenant(self, tenant: str) -> int:
        """Deletes ``tenant``'s rows, queued and stored, and those its requests in flight
        would write when they finish."""
        self.forget(tenant)
        await self.flush()
        async with self.store.begin() as conn:
            result = await conn.execute(sa.delete(request_log).where(R.tenant == tenant))
            return int(result.rowcount or 0)

    async def training_rows(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Rated rows with prompts as ``router.read_records`` JSONL objects: the serving
        tier's outcome is the rating mapped from [-1, 1] to [0, 1], the other tier's None."""
        out: list[dict[str, Any]] = []
        offset = 0
        while page := await self.rows(tenant, offset=offset, limit=1000):
            offset += len(page)
            for r in page:
                if r["rating"] is None or not r["prompt"] or r["tier"] not in ("small", "large"):
                    continue
                reward = (float(r["rating"]) + 1) / 2
                out.append(
                    {
                        "prompt": r["prompt"],
                        "small_ok": reward if r["tier"] == "small" else None,
                        "large_ok": reward if r["tier"] == "large" else None,
                        "category": r["category"],
                        "prompt_tokens": r["prompt_tokens"] or None,
                    }
                )
        return out


# -- accounting once the answer is sent ---------------------------------------------------


def account(
    s: Services,
    tenant: str,
    body: dict[str, Any],
    trace: Trace,
    response: Response,
    *,
    key: str | None = None,
) -> Response:
    """Charges the tenant's and ``key``'s limits and queues the log row when
    ``response`` has been sent."""
    wants_log = s.request_log is not None and s.privacy.for_tenant(tenant).request_log
    if not wants_log and (s.limits is None or not s.limits.enabled):
        return response

    def done(answer: dict[str, Any]) -> None:
        prompt, completion = usage_of(answer)
        backend = s.pool.resolve(trace.backend) if trace.backend else None
        hit = trace.cache == "hit"
        if s.limits is not None and not hit:
            cost = backend.spec.price.cost(prompt, completion) if backend is not None else 0.0
            s.limits.charge(tenant, completion, cost, key=key)
        if wants_log and s.request_log is not None:
            rid = answer.get("id")
            s.request_log.add(
                LogRow(
                    tenant=tenant,
                    at=time.time(),
                    category=trace.category,
                    cache=trace.cache,
                    tier=backend.tier if backend is not None else None,
                    backend=trace.backend,
                    router_score=trace.router_score,
                    prompt=_prompt(body) if s.privacy.for_tenant(tenant).store_prompts else None,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    # The backend's id: one longer than the column (a malformed backend)
                    # would fail the whole batch on PostgreSQL; such an id is not kept.
                    response_id=rid if isinstance(rid, str) and len(rid) <= ID_CHARS else None,
                    started=trace.started,
                )
            )

    if isinstance(response, StreamingResponse):
        response.body_iterator = _watch(response.body_iterator, trace.endpoint == "chat", done)
        return response
    try:
        answer = json.loads(bytes(response.body))
    except ValueError:
        return response
    if isinstance(answer, dict):
        done(answer)
    return response


async def _watch(
    events: AsyncIterable[Any], chat: bool, done: Callable[[dict[str, Any]], None]
) -> AsyncIterator[Any]:
    acc = StreamAccumulator(chat=chat)
    try:
        async for event in events:
            raw = event.encode() if isinstance(event, str) else bytes(event)
            if raw.startswith(b"data: "):
                acc.add(raw[6:].strip().decode("utf-8", errors="replace"))
            yield event
    finally:
        answer = acc.body()
        if "usage" not in answer and acc.text:
            # No usage chunk (include_usage not asked): four characters a token.
            answer["usage"] = {"prompt_tokens": 0, "completion_tokens": len(acc.text) // 4 + 1}
        done(answer)


def _prompt(body: dict[str, Any]) -> str | None:
    norm = normalise_chat(body) if "messages" in body else normalise_completion(body)
    return norm.text or None


def training_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


async def training_export(settings: Settings, tenant: str | None) -> list[dict[str, Any]]:
    """:meth:`RequestLog.training_rows` of the configured store (for the CLI)."""
    store = OpsStore(settings.storage.url)
    try:
        return await RequestLog(store, settings.privacy, CollectorRegistry()).training_rows(tenant)
    finally:
        await store.close()
