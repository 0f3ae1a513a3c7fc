"""/admin/limits: usage limits per tenant (configured, admin overrides, current usage).

An override is stored in ``limit_overrides`` and reaches every replica's limiter
within one sync interval (``limits.sync_interval_s``); every change is audited
(kind ``limit``) in the admin audit trail.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from proxy.admin.deps import AdminDep
from proxy.admin.models import NAME
from proxy.errors import InvalidRequest, NotFound
from proxy.limits import FIELDS, Limiter, TenantLimits

router = APIRouter(prefix="/limits", tags=["admin: limits"])
Tenant = Annotated[str, Path(pattern=NAME, description="a tenant name")]


class LimitValues(BaseModel):
    requests_per_minute: int | None
    tokens_per_minute: int | None
    budget_dollars: float | None


class LimitFields(BaseModel):
    """Limits to set; ``null`` means unlimited. A field left out keeps its configured
    (PUT) or current (PATCH) value."""

    model_config = ConfigDict(extra="forbid")
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    budget_dollars: float | None = Field(None, ge=0)


class UsageView(BaseModel):
    requests: float = Field(description="requests this minute")
    tokens: float = Field(description="tokens this minute")
    cost: float = Field(description="dollars this budget period")


class TenantLimitView(BaseModel):
    object: Literal["tenant.limits"] = "tenant.limits"
    tenant: str
    source: Literal["configured", "admin"]
    overrides: dict[str, Any]
    configured: LimitValues
    effective: LimitValues
    usage: UsageView


class LimitList(BaseModel):
    object: Literal["list"] = "list"
    defaults: LimitValues
    budget_period_s: float
    sync_interval_s: float
    store_available: bool
    data: list[TenantLimitView]


def _limiter(a: AdminDep) -> Limiter:
    limiter = a.services.limits
    if limiter is None or a.services.ops_store is None:
        raise NotFound("usage limits are not running on this replica")
    return limiter


def _values(limits: TenantLimits) -> LimitValues:
    return LimitValues.model_validate(limits.as_dict())


def _view(limiter: Limiter, tenant: str) -> TenantLimitView:
    override = limiter.overrides.get(tenant)
    return TenantLimitView(
        tenant=tenant,
        source="admin" if override else "configured",
        overrides=dict(override or {}),
        configured=_values(limiter.configured(tenant)),
        effective=_values(limiter.effective(tenant)),
        usage=UsageView.model_validate(vars(limiter.usage(tenant))),
    )


@router.get("", response_model=LimitList)
async def list_limits(a: AdminDep) -> LimitList:
    """Defaults, and every tenant that is configured, overridden or seen recently."""
    limiter = _limiter(a)
    names = set(limiter.settings.tenants) | set(limiter.overrides) | limiter.tenants_seen()
    s = limiter.settings
    return LimitList(
        defaults=LimitValues(
            requests_per_minute=s.requests_per_minute,
            tokens_per_minute=s.tokens_per_minute,
            budget_dollars=s.budget_dollars,
        ),
        budget_period_s=s.budget_period_s,
        sync_interval_s=s.sync_interval_s,
        store_available=limiter.store_ok,
        data=[_view(limiter, n) for n in sorted(names)],
    )


@router.get("/{tenant}", response_model=TenantLimitView)
async def read_limits(a: AdminDep, tenant: Tenant) -> TenantLimitView:
    return _view(_limiter(a), tenant)


async def _save(a: AdminDep, tenant: str, fields: dict[str, Any], action: str) -> TenantLimitView:
    limiter = _limiter(a)
    assert a.services.ops_store is not None
    state = a.state  # 503 when the admin store is down: changes must be audited
    try:
        TenantLimits(**{**limiter.configured(tenant).as_dict(), **fields})
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    old = limiter.overrides.get(tenant)
    await a.services.ops_store.put_override(tenant, fields, a.now(), a.actor)
    await state.store.write(a.audit("limit", action, tenant, old, fields), now=a.now())
    limiter.overrides[tenant] = fields  # this replica at once, the others on their next sync
    return _view(limiter, tenant)


def _given(body: LimitFields) -> dict[str, Any]:
    return {name: getattr(body, name) for name in FIELDS if name in body.model_fields_set}


@router.put("/{tenant}", response_model=TenantLimitView)
async def replace_limits(a: AdminDep, tenant: Tenant, body: LimitFields) -> TenantLimitView:
    """Replaces the tenant's override: fields left out take their configured values."""
    return await _save(a, tenant, _given(body), "replace")


@router.patch("/{tenant}", response_model=TenantLimitView)
async def patch_limits(a: AdminDep, tenant: Tenant, body: LimitFields) -> TenantLimitView:
    """Changes only the fields sent; the others keep their current values."""
    current = _limiter(a).overrides.get(tenant) or {}
    return await _save(a, tenant, {**current, **_given(body)}, "patch")


@router.delete("/{tenant}", response_model=TenantLimitView)
async def delete_limits(a: AdminDep, tenant: Tenant) -> TenantLimitView:
    """Drops the override: the tenant goes back to its configured limits."""
    limiter = _limiter(a)
    assert a.services.ops_store is not None
    state = a.state
    old = limiter.overrides.get(tenant)
    if old is None or not await a.services.ops_store.delete_override(tenant):
        raise NotFound(f"tenant {tenant!r} has no admin limits", param="tenant")
    await state.store.write(a.audit("limit", "delete", tenant, old, None), now=a.now())
    limiter.overrides.pop(tenant, None)
    return _view(limiter, tenant)
