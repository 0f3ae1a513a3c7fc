"""/admin/limits: usage limits per tenant and per API key (configured, admin
overrides, current usage).

A request must pass its key's limits and its tenant's. Keys are named by their
non-secret id (``cfg:<key_env>`` for a configuration-file key, ``key_...`` for
an API-made one). An override is stored in ``limit_overrides`` and reaches every
replica's limiter within one sync interval (``limits.sync_interval_s``); every
change is audited (kind ``limit``; target the tenant, or ``key:<id>``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from proxy.admin.deps import AdminDep
from proxy.admin.models import NAME
from proxy.errors import InvalidRequest, NotFound
from proxy.limits import FIELDS, Limiter, Limits, Scope, Subject

router = APIRouter(prefix="/limits", tags=["admin: limits"])
Tenant = Annotated[str, Path(pattern=NAME, description="a tenant name")]
KEY_ID = r"^[A-Za-z0-9_.:\-]{1,160}$"
KeyId = Annotated[str, Path(pattern=KEY_ID, description="a key id (cfg:<key_env> or key_...)")]


class LimitValues(BaseModel):
    requests_per_minute: int | None
    tokens_per_minute: int | None
    budget_dollars: float | None
    max_messages: int | None
    max_total_chars: int | None
    max_tokens_ceiling: int | None


class LimitFields(BaseModel):
    """Limits to set; ``null`` means unlimited (for a bound: the deployment's). A field
    left out keeps its configured (PUT) or current (PATCH) value. Bounds can only lower
    the deployment's ``limits.max_*``."""

    model_config = ConfigDict(extra="forbid")
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    budget_dollars: float | None = Field(None, ge=0)
    max_messages: int | None = Field(None, ge=1)
    max_total_chars: int | None = Field(None, ge=1)
    max_tokens_ceiling: int | None = Field(None, ge=1)


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


class KeyLimitView(BaseModel):
    object: Literal["key.limits"] = "key.limits"
    key_id: str
    tenant: str | None = Field(description="the key's tenant (None: revoked or unknown)")
    source: Literal["configured", "admin"]
    overrides: dict[str, Any]
    configured: LimitValues
    effective: LimitValues
    usage: UsageView


class LimitList(BaseModel):
    object: Literal["list"] = "list"
    defaults: LimitValues
    key_defaults: LimitValues
    budget_period_s: float
    sync_interval_s: float
    store_available: bool
    data: list[TenantLimitView]


class KeyLimitList(BaseModel):
    object: Literal["list"] = "list"
    key_defaults: LimitValues
    data: list[KeyLimitView]


def _limiter(a: AdminDep) -> Limiter:
    limiter = a.services.limits
    if limiter is None or a.services.ops_store is None:
        raise NotFound("usage limits are not running on this replica")
    return limiter


def _values(limits: Limits) -> LimitValues:
    return LimitValues.model_validate(limits.as_dict())


def _parts(limiter: Limiter, subject: Subject) -> dict[str, Any]:
    override = limiter.overrides.get(subject)
    return {
        "source": "admin" if override else "configured",
        "overrides": dict(override or {}),
        "configured": _values(limiter.configured(*subject)),
        "effective": _values(limiter.effective(*subject)),
        "usage": UsageView.model_validate(vars(limiter.usage(*subject))),
    }


def _view(limiter: Limiter, tenant: str) -> TenantLimitView:
    return TenantLimitView(tenant=tenant, **_parts(limiter, ("tenant", tenant)))


def _key_view(a: AdminDep, limiter: Limiter, key_id: str) -> KeyLimitView:
    tenant = a.services.auth.active_keys().get(key_id)
    return KeyLimitView(key_id=key_id, tenant=tenant, **_parts(limiter, ("key", key_id)))


async def _save(a: AdminDep, subject: Subject, fields: dict[str, Any], action: str) -> None:
    limiter = _limiter(a)
    assert a.services.ops_store is not None
    state = a.state  # 503 when the admin store is down: changes must be audited
    try:
        Limits(**{**limiter.configured(*subject).as_dict(), **fields})
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    old = limiter.overrides.get(subject)
    await a.services.ops_store.put_override(subject, fields, a.now(), a.actor)
    await state.store.write(a.audit("limit", action, _target(subject), old, fields), now=a.now())
    limiter.set_override(subject, fields)  # this replica at once, the others on their next sync


async def _drop(a: AdminDep, subject: Subject) -> None:
    limiter = _limiter(a)
    assert a.services.ops_store is not None
    state = a.state
    old = limiter.overrides.get(subject)
    if old is None or not await a.services.ops_store.delete_override(subject):
        scope, name = subject
        param = "tenant" if scope == "tenant" else "key_id"
        raise NotFound(f"{scope} {name!r} has no admin limits", param=param)
    await state.store.write(a.audit("limit", "delete", _target(subject), old, None), now=a.now())
    limiter.set_override(subject, None)


def _target(subject: Subject) -> str:
    scope, name = subject
    return name if scope == "tenant" else f"key:{name}"


def _given(body: LimitFields) -> dict[str, Any]:
    return {name: getattr(body, name) for name in FIELDS if name in body.model_fields_set}


def _patched(limiter: Limiter, subject: Subject, body: LimitFields) -> dict[str, Any]:
    return {**(limiter.overrides.get(subject) or {}), **_given(body)}


def _defaults(limiter: Limiter, scope: Scope) -> LimitValues:
    return _values(limiter.defaults(scope))


# -- keys (before /{tenant}, which would take "keys" as a tenant name) ----------------------


@router.get("/keys", response_model=KeyLimitList)
async def list_key_limits(a: AdminDep) -> KeyLimitList:
    """Every active key, and every key that is configured, overridden or seen recently."""
    limiter = _limiter(a)
    names = set(a.services.auth.active_keys()) | set(limiter.settings.keys)
    names |= {name for scope, name in limiter.overrides if scope == "key"}
    names |= limiter.subjects_seen("key")
    return KeyLimitList(
        key_defaults=_defaults(limiter, "key"),
        data=[_key_view(a, limiter, n) for n in sorted(names)],
    )


def _known_key(a: AdminDep, key_id: str) -> str:
    if key_id not in a.services.auth.active_keys():
        raise NotFound(f"no active key {key_id!r}", param="key_id")
    return key_id


@router.get("/keys/{key_id}", response_model=KeyLimitView)
async def read_key_limits(a: AdminDep, key_id: KeyId) -> KeyLimitView:
    return _key_view(a, _limiter(a), key_id)


@router.put("/keys/{key_id}", response_model=KeyLimitView)
async def replace_key_limits(a: AdminDep, key_id: KeyId, body: LimitFields) -> KeyLimitView:
    """Replaces the key's override (the key must be active): fields left out take
    their configured values."""
    await _save(a, ("key", _known_key(a, key_id)), _given(body), "replace")
    return _key_view(a, _limiter(a), key_id)


@router.patch("/keys/{key_id}", response_model=KeyLimitView)
async def patch_key_limits(a: AdminDep, key_id: KeyId, body: LimitFields) -> KeyLimitView:
    """Changes only the fields sent; the others keep their current values."""
    subject: Subject = ("key", _known_key(a, key_id))
    await _save(a, subject, _patched(_limiter(a), subject, body), "patch")
    return _key_view(a, _limiter(a), key_id)


@router.delete("/keys/{key_id}", response_model=KeyLimitView)
async def delete_key_limits(a: AdminDep, key_id: KeyId) -> KeyLimitView:
    """Drops the override: the key goes back to its configured limits."""
    await _drop(a, ("key", key_id))
    return _key_view(a, _limiter(a), key_id)


# -- tenants -------------------------------------------------------------------------------


@router.get("", response_model=LimitList)
async def list_limits(a: AdminDep) -> LimitList:
    """Defaults, and every tenant that is configured, overridden or seen recently."""
    limiter = _limiter(a)
    names = set(limiter.settings.tenants) | limiter.subjects_seen("tenant")
    names |= {name for scope, name in limiter.overrides if scope == "tenant"}
    s = limiter.settings
    return LimitList(
        defaults=_defaults(limiter, "tenant"),
        key_defaults=_defaults(limiter, "key"),
        budget_period_s=s.budget_period_s,
        sync_interval_s=s.sync_interval_s,
        store_available=limiter.store_ok,
        data=[_view(limiter, n) for n in sorted(names)],
    )


@router.get("/{tenant}", response_model=TenantLimitView)
async def read_limits(a: AdminDep, tenant: Tenant) -> TenantLimitView:
    return _view(_limiter(a), tenant)


@router.put("/{tenant}", response_model=TenantLimitView)
async def replace_limits(a: AdminDep, tenant: Tenant, body: LimitFields) -> TenantLimitView:
    """Replaces the tenant's override: fields left out take their configured values."""
    await _save(a, ("tenant", tenant), _given(body), "replace")
    return _view(_limiter(a), tenant)


@router.patch("/{tenant}", response_model=TenantLimitView)
async def patch_limits(a: AdminDep, tenant: Tenant, body: LimitFields) -> TenantLimitView:
    """Changes only the fields sent; the others keep their current values."""
    subject: Subject = ("tenant", tenant)
    await _save(a, subject, _patched(_limiter(a), subject, body), "patch")
    return _view(_limiter(a), tenant)


@router.delete("/{tenant}", response_model=TenantLimitView)
async def delete_limits(a: AdminDep, tenant: Tenant) -> TenantLimitView:
    """Drops the override: the tenant goes back to its configured limits."""
    await _drop(a, ("tenant", tenant))
    return _view(_limiter(a), tenant)
