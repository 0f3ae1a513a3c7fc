"""/admin/tenants/{tenant}: export everything stored about a tenant, or delete it.

Export (streamed, see ``export``): its cache entries with their answers (without
vectors), its request log rows, its API keys' metadata (never the secrets, which
are not stored) and its limits and its keys'. Delete: revokes its keys (API-made
ones, and configuration-file ones through ``admin_revoked_keys``: refused on
every replica from their next poll), flushes its cache entries, deletes its
request log rows, its and its keys' usage counters and limit overrides; audited
(kind ``tenant``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cache import CacheUnavailable
from proxy.admin.deps import AdminDep
from proxy.admin.export import entry_pages, log_pages, stream_export
from proxy.admin.models import NAME
from proxy.admin.routes_keys import _view as key_view
from proxy.admin.routes_keys import revoke_configured
from proxy.errors import Unavailable
from proxy.limits import Subject
from proxy.request_log import RequestLog

router = APIRouter(prefix="/tenants", tags=["admin: tenants"])
Tenant = Annotated[str, Path(pattern=NAME, description="a tenant name")]


class TenantExport(BaseModel):
    """The export's shape (it is streamed: ``complete`` is written last)."""

    object: Literal["tenant.export"] = "tenant.export"
    tenant: str
    exported_at: float
    keys: list[dict[str, Any]]
    configured_keys: int
    configured_key_ids: list[str]
    limits: dict[str, Any]
    privacy: dict[str, bool]
    cache_entries: list[dict[str, Any]]
    request_log: list[dict[str, Any]]
    complete: bool


class TenantDeleted(BaseModel):
    object: Literal["tenant.deleted"] = "tenant.deleted"
    tenant: str
    cache_entries: int
    keys_revoked: int
    configured_keys_revoked: int
    request_log_rows: int
    configured_keys: int  # still named in the configuration file (refused): remove them there


def _log(a: AdminDep) -> RequestLog:
    if a.services.request_log is None:
        raise Unavailable("the request log is not running on this replica")
    return a.services.request_log


def _configured_keys(a: AdminDep, tenant: str) -> int:
    return sum(1 for k in a.services.settings.auth.keys if k.tenant == tenant)


def _key_ids(a: AdminDep, tenant: str) -> list[str]:
    """Every key the tenant has or had here: API-made ones and configured ones."""
    made = [k.id for k in a.state.keys.values() if k.tenant == tenant]
    configured = [k for k, t in a.services.auth.active_keys().items() if t == tenant]
    revoked = [r.key_id for r in a.state.revoked_configured if r.tenant == tenant]
    return sorted({*made, *configured, *revoked})


def _limits(a: AdminDep, tenant: str) -> dict[str, Any]:
    limiter = a.services.limits
    if limiter is None:
        return {}

    def one(subject: Subject) -> dict[str, Any]:
        return {
            "effective": limiter.effective(*subject).as_dict(),
            "override": limiter.overrides.get(subject),
            "usage": vars(limiter.usage(*subject)),
        }

    return {
        **one(("tenant", tenant)),
        "keys": {k: one(("key", k)) for k in _key_ids(a, tenant)},
    }


@router.get(
    "/{tenant}/export",
    response_class=StreamingResponse,
    responses={200: {"model": TenantExport, "description": "streamed JSON"}},
)
async def export_tenant(a: AdminDep, tenant: Tenant) -> StreamingResponse:
    """Everything cachegate stores about ``tenant``, streamed page by page (a large
    tenant costs one page of memory); the document ends with ``"complete": true``."""
    s = a.services
    if s.settings.cache.enabled and s.cache is None:
        raise CacheUnavailable("the cache store is unreachable; nothing was exported")
    log = _log(a)
    state = a.state
    head = {
        "object": "tenant.export",
        "tenant": tenant,
        "exported_at": a.now(),
        "keys": [key_view(k).model_dump() for k in state.keys.values() if k.tenant == tenant],
        "configured_keys": _configured_keys(a, tenant),
        "configured_key_ids": sorted(
            {k for k, t in s.auth.active_keys().items() if t == tenant and k.startswith("cfg:")}
            | {r.key_id for r in state.revoked_configured if r.tenant == tenant}
        ),
        "limits": _limits(a, tenant),
        "privacy": vars(s.privacy.for_tenant(tenant)),
    }
    # The cache's own engine: the same database as the admin tables unless it is an
    # in-memory one, which each engine holds apart.
    entries = entry_pages(s.cache.store.engine, tenant) if s.cache is not None else None
    body = stream_export(head, entries, log_pages(log, tenant))
    return StreamingResponse(body, media_type="application/json")


@router.delete("/{tenant}", response_model=TenantDeleted)
async def delete_tenant(a: AdminDep, tenant: Tenant) -> TenantDeleted:
    """Revokes the tenant's keys first (no new traffic), then deletes its data."""
    state = a.state
    if a.services.settings.cache.enabled and a.services.cache is None:
        raise CacheUnavailable("the cache store is unreachable; nothing was deleted")
    revoked = 0
    key_ids = _key_ids(a, tenant)
    configured = a.services.auth.configured_keys(tenant)
    async with state.lock:
        for k in [k for k in state.keys.values() if k.tenant == tenant and not k.revoked_at]:
            audit = a.audit("key", "revoke", k.id, {"tenant": k.tenant, "name": k.name}, None)
            state.own.add(await state.store.revoke_key(k.id, audit, a.now()))
            revoked += 1
        if configured:
            await revoke_configured(a, state, configured, tenant)
        await state.reload({"key"})
    flushed = 0
    if a.services.cache is not None:
        # Covers answers still queued for writing and requests in flight too.
        flushed = await a.services.cache.flush_entries(tenant=tenant)
    log_rows = await _log(a).delete_tenant(tenant)
    subjects: list[Subject] = [("tenant", tenant), *(("key", k) for k in key_ids)]
    if a.services.ops_store is not None:
        await a.services.ops_store.delete_counters(subjects)
        for subject in subjects:
            await a.services.ops_store.delete_override(subject)
    if a.services.limits is not None:
        for subject in subjects:
            a.services.limits.set_override(subject, None)
    counts = {
        "cache_entries": flushed,
        "keys_revoked": revoked,
        "configured_keys_revoked": len(configured),
        "request_log_rows": log_rows,
    }
    async with state.lock:  # this replica's own: its poller does not apply it again
        state.own.add(
            await state.store.write(a.audit("tenant", "delete", tenant, None, counts), now=a.now())
        )
    return TenantDeleted(tenant=tenant, configured_keys=_configured_keys(a, tenant), **counts)
