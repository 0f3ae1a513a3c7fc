"""/admin/tenants/{tenant}: export everything stored about a tenant, or delete it.

Export: its cache entries (without vectors), its API keys' metadata (never the
secrets, which are not stored), its request log rows and its limits. Delete:
revokes its API-made keys, flushes its cache entries, deletes its request log
rows, usage counters and limit override; audited (kind ``tenant``). Keys that
come from the configuration file cannot be revoked here: remove them there.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel

from cache import CacheUnavailable
from proxy.admin.deps import AdminDep
from proxy.admin.models import NAME
from proxy.admin.routes_cache import _cache
from proxy.admin.routes_keys import _view as key_view
from proxy.errors import Unavailable
from proxy.request_log import RequestLog

router = APIRouter(prefix="/tenants", tags=["admin: tenants"])
Tenant = Annotated[str, Path(pattern=NAME, description="a tenant name")]
PAGE = 1000


class TenantExport(BaseModel):
    object: Literal["tenant.export"] = "tenant.export"
    tenant: str
    exported_at: float
    cache_entries: list[dict[str, Any]]
    keys: list[dict[str, Any]]
    configured_keys: int
    request_log: list[dict[str, Any]]
    limits: dict[str, Any]
    privacy: dict[str, bool]


class TenantDeleted(BaseModel):
    object: Literal["tenant.deleted"] = "tenant.deleted"
    tenant: str
    cache_entries: int
    keys_revoked: int
    request_log_rows: int
    configured_keys: int  # still in the configuration file: remove them there


def _log(a: AdminDep) -> RequestLog:
    if a.services.request_log is None:
        raise Unavailable("the request log is not running on this replica")
    return a.services.request_log


def _configured_keys(a: AdminDep, tenant: str) -> int:
    return sum(1 for k in a.services.settings.auth.keys if k.tenant == tenant)


@router.get("/{tenant}/export", response_model=TenantExport)
async def export_tenant(a: AdminDep, tenant: Tenant) -> TenantExport:
    """Everything cachegate stores about ``tenant`` (may be large: entries are paged
    internally, the answer is one document)."""
    entries: list[dict[str, Any]] = []
    if a.services.cache is not None or a.services.settings.cache.enabled:
        cache = _cache(a)
        while page := await cache.list_entries(tenant=tenant, offset=len(entries), limit=PAGE):
            entries.extend(dataclasses.asdict(e) for e in page)
    rows: list[dict[str, Any]] = []
    log = _log(a)
    await log.flush()
    while page2 := await log.rows(tenant, offset=len(rows), limit=PAGE):
        rows.extend(page2)
    keys = [key_view(k).model_dump() for k in a.state.keys.values() if k.tenant == tenant]
    limits: dict[str, Any] = {}
    if a.services.limits is not None:
        limits = {
            "effective": a.services.limits.effective(tenant).as_dict(),
            "override": a.services.limits.overrides.get(tenant),
            "usage": vars(a.services.limits.usage(tenant)),
        }
    return TenantExport(
        tenant=tenant,
        exported_at=a.now(),
        cache_entries=entries,
        keys=keys,
        configured_keys=_configured_keys(a, tenant),
        request_log=rows,
        limits=limits,
        privacy=vars(a.services.privacy.for_tenant(tenant)),
    )


@router.delete("/{tenant}", response_model=TenantDeleted)
async def delete_tenant(a: AdminDep, tenant: Tenant) -> TenantDeleted:
    """Revokes the tenant's keys first (no new traffic), then deletes its data."""
    state = a.state
    if a.services.settings.cache.enabled and a.services.cache is None:
        raise CacheUnavailable("the cache store is unreachable; nothing was deleted")
    revoked = 0
    async with state.lock:
        for k in [k for k in state.keys.values() if k.tenant == tenant and not k.revoked_at]:
            audit = a.audit("key", "revoke", k.id, {"tenant": k.tenant, "name": k.name}, None)
            state.own.add(await state.store.revoke_key(k.id, audit, a.now()))
            revoked += 1
        await state.reload({"key"})
    flushed = 0
    if a.services.cache is not None:
        await a.services.cache.flush()  # answers still queued for writing go too
        flushed = await a.services.cache.flush_entries(tenant=tenant)
    log_rows = await _log(a).delete_tenant(tenant)
    if a.services.ops_store is not None:
        await a.services.ops_store.delete_tenant_counters(tenant)
        await a.services.ops_store.delete_override(tenant)
    if a.services.limits is not None:
        a.services.limits.overrides.pop(tenant, None)
    counts = {"cache_entries": flushed, "keys_revoked": revoked, "request_log_rows": log_rows}
    await state.store.write(a.audit("tenant", "delete", tenant, None, counts), now=a.now())
    return TenantDeleted(tenant=tenant, configured_keys=_configured_keys(a, tenant), **counts)
