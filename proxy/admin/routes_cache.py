"""/admin/cache: statistics, entries (list, search, delete) and flushing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from cache import CacheUnavailable, CategoryStats, SemanticCache
from proxy.admin.deps import AdminDep
from proxy.admin.models import (
    MAX_OFFSET,
    CacheStatRow,
    CacheStats,
    Deleted,
    EntryPage,
    EntryView,
    FlushBody,
    FlushResult,
    SeedBody,
    Seeded,
)
from proxy.auth import Principal
from proxy.errors import InvalidRequest
from proxy.pipeline import Pipeline
from proxy.trace import Endpoint

router = APIRouter(prefix="/cache", tags=["admin: cache"])


def _cache(a: AdminDep) -> SemanticCache:
    if a.services.cache is None:
        reason = (
            "the cache is disabled (cache.enabled: false)"
            if not a.services.settings.cache.enabled
            else "the cache store is unreachable; requests are served without the cache "
            "and it reconnects on its own"
        )
        raise CacheUnavailable(reason)
    return a.services.cache


def _row(c: CategoryStats) -> CacheStatRow:
    looked = c.hits + c.misses
    return CacheStatRow(
        **{k: getattr(c, k) for k in CacheStatRow.model_fields if k != "hit_rate"},
        hit_rate=c.hits / looked if looked else None,
    )


@router.get("/stats", response_model=CacheStats)
async def stats(a: AdminDep) -> CacheStats:
    """Per category and tenant: live entries and bytes now; lookups, evictions and
    expirations counted by this replica since it started."""
    cache = _cache(a)
    rows = await cache.stats()
    total = CategoryStats(
        category="*",
        tenant="*",
        entries=sum(r.entries for r in rows),
        bytes=sum(r.bytes for r in rows),
        hits=sum(r.hits for r in rows),
        misses=sum(r.misses for r in rows),
        evictions=sum(r.evictions for r in rows),
        expirations=sum(r.expirations for r in rows),
    )
    return CacheStats(
        data=[_row(r) for r in rows],
        total=_row(total),
        store_available=cache.counters().store_available,
        serving=cache.serving,
        counted_since=a.services.started_at,
    )


@router.get("/entries", response_model=EntryPage)
async def list_entries(
    a: AdminDep,
    category: Annotated[str | None, Query(max_length=64)] = None,
    tenant: Annotated[str | None, Query(max_length=255)] = None,
    q: Annotated[
        str | None, Query(max_length=1000, description="text the request contains")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> EntryPage:
    """Live entries, newest first."""
    infos = await _cache(a).list_entries(
        category=category, tenant=tenant, text_contains=q, offset=offset, limit=limit
    )
    data = [
        EntryView(id=e.entry_id, **{k: getattr(e, k) for k in EntryView.model_fields if k != "id"})
        for e in infos
    ]
    return EntryPage(data=data, offset=offset, limit=limit)


@router.post("/entries", response_model=Seeded, status_code=201)
async def seed_entry(a: AdminDep, body: SeedBody) -> Seeded:
    """Stores an answer for a request (an FAQ, a corrected answer), under the scope,
    category and policy the request path would give that request, on every replica;
    it replaces an entry stored for the same text in that scope."""
    _cache(a)
    request = body.request
    endpoint: Endpoint = "chat" if "messages" in request else "completion"
    if endpoint == "completion" and "prompt" not in request:
        raise InvalidRequest("request needs messages (chat) or prompt", param="request")
    known = _categories(a)
    if body.category is not None and body.category not in known:
        raise InvalidRequest(
            f"no category named {body.category!r}; known: {', '.join(sorted(known))}",
            param="category",
        )
    seeded = await Pipeline(a.services).seed(
        Principal(tenant=body.tenant, key_id=None, admin=True),
        request,
        endpoint,
        body.answer,
        body.category,
    )
    new = {"tenant": body.tenant, "category": seeded.category, "replaced": seeded.replaced}
    await a.state.store.write(
        a.audit("cache", "seed", str(seeded.entry_id), None, new), now=a.now()
    )
    return Seeded(
        id=seeded.entry_id,
        tenant=body.tenant,
        category=seeded.category,
        request_text=seeded.text,
        replaced=seeded.replaced,
    )


def _categories(a: AdminDep) -> set[str]:
    clf = a.services.classifier
    names = {d.name for d in clf.categories} if clf is not None else set()
    return names | {"general"} | set(a.services.policies)


@router.delete("/entries/{entry_id}", response_model=Deleted)
async def delete_entry(a: AdminDep, entry_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Deleted:
    """Deletes one entry on every replica (404 when there is no live entry of that id)."""
    cache, state = _cache(a), a.state
    await cache.delete(entry_id)
    await state.store.write(a.audit("cache", "delete", str(entry_id)), now=a.now())
    return Deleted(id=str(entry_id), object="cache.entry")


@router.post("/flush", response_model=FlushResult)
async def flush(a: AdminDep, body: FlushBody) -> FlushResult:
    """Deletes the entries of a category and/or tenant; ``dry_run`` only counts them."""
    if body.category is None and body.tenant is None and not body.all:
        raise InvalidRequest(
            "name a category and/or tenant, or send all: true to flush everything",
            param="all",
        )
    cache, state = _cache(a), a.state
    count = await cache.flush_entries(
        category=body.category, tenant=body.tenant, dry_run=body.dry_run
    )
    if not body.dry_run:
        target = f"category={body.category or '*'} tenant={body.tenant or '*'}"
        # The scope travels in the audit row: other replicas apply the flush too.
        scope = {"category": body.category, "tenant": body.tenant}
        audit = a.audit("cache", "flush", target, None, {"deleted": count, **scope})
        # Under the lock and marked as this replica's own: its poller must not apply the
        # flush a second time here (deleting what was stored since).
        async with state.lock:
            state.own.add(await state.store.write(audit, now=a.now()))
    return FlushResult(
        count=count, dry_run=body.dry_run, category=body.category, tenant=body.tenant
    )
