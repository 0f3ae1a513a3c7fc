"""/admin/policies and /admin/audit: per-category cache policies, every change audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from cache import CategoryPolicy, PolicyError
from proxy.admin.deps import AdminDep, refuse
from proxy.admin.models import (
    MAX_OFFSET,
    NAME,
    AuditItem,
    AuditPage,
    PolicyCreate,
    PolicyFields,
    PolicyList,
    PolicyValues,
    PolicyView,
)
from proxy.admin.state import AdminState, build_policy, policy_dict
from proxy.admin.store import PolicyOverride
from proxy.errors import Conflict, InvalidRequest, NotFound

router = APIRouter(tags=["admin: policies"])
FIELDS = tuple(PolicyFields.model_fields)
NULLABLE = frozenset({"equivalence_threshold", "threshold_floor", "equivalence_floor"})
Category = Annotated[str, Path(pattern=NAME, description="a category name")]


def _values(policy: CategoryPolicy) -> PolicyValues:
    return PolicyValues.model_validate(policy_dict(policy))


def _view(a: AdminDep, category: str) -> PolicyView:
    state = a.state
    o = state.overrides.get(category)
    return PolicyView(
        category=category,
        source="admin" if o else "configured",
        overrides=dict(o.fields) if o else {},
        configured=_values(state.configured_policy(category)),
        effective=_values(a.services.effective_policy(category)),
        updated_at=o.updated_at if o else None,
        updated_by=o.updated_by if o else None,
    )


def _given(body: PolicyFields) -> dict[str, Any]:
    """The fields the client sent (an explicit null only where null means something)."""
    out: dict[str, Any] = {}
    for name in sorted(body.model_fields_set - {"category"}):
        value = getattr(body, name)
        if value is None and name not in NULLABLE:
            raise InvalidRequest(f"{name} must not be null", param=name)
        out[name] = list(value) if isinstance(value, tuple | list) else value
    return out


async def _save(a: AdminDep, category: str, fields: dict[str, Any], action: str) -> PolicyView:
    state: AdminState = a.state
    try:
        build_policy(state.configured_policy(category), fields)
    except PolicyError as exc:
        raise refuse(exc, FIELDS) from None
    old = state.overrides.get(category)
    o = PolicyOverride(category, fields, a.now(), a.actor)
    audit = a.audit("policy", action, category, old.fields if old else None, fields)
    state.own.add(await state.store.put_policy(o, audit))
    await state.reload({"policy"})
    return _view(a, category)


@router.get("/policies", response_model=PolicyList)
async def list_policies(a: AdminDep) -> PolicyList:
    state = a.state
    names = set(state.configured_policies) | set(state.overrides)
    if a.services.classifier is not None:
        names |= {d.name for d in a.services.classifier.categories}
    return PolicyList(
        data=[_view(a, n) for n in sorted(names)],
        default=_values(state.configured_policies.default),
    )


@router.get("/policies/{category}", response_model=PolicyView)
async def read_policy(a: AdminDep, category: Category) -> PolicyView:
    return _view(a, category)


@router.post("/policies", response_model=PolicyView, status_code=201)
async def create_policy(a: AdminDep, body: PolicyCreate) -> PolicyView:
    """An override for a category that has none yet (409 otherwise)."""
    async with a.state.lock:
        if body.category in a.state.overrides:
            raise Conflict(
                f"category {body.category!r} already has an admin policy; PUT or PATCH it",
                param="category",
            )
        return await _save(a, body.category, _given(body), "create")


@router.put("/policies/{category}", response_model=PolicyView)
async def replace_policy(a: AdminDep, category: Category, body: PolicyFields) -> PolicyView:
    """Replaces the override: fields left out take their configured values."""
    async with a.state.lock:
        return await _save(a, category, _given(body), "replace")


@router.patch("/policies/{category}", response_model=PolicyView)
async def patch_policy(a: AdminDep, category: Category, body: PolicyFields) -> PolicyView:
    """Changes only the fields sent; the others keep their current values."""
    async with a.state.lock:
        old = a.state.overrides.get(category)
        fields = {**(old.fields if old else {}), **_given(body)}
        return await _save(a, category, fields, "patch")


@router.delete("/policies/{category}", response_model=PolicyView)
async def delete_policy(a: AdminDep, category: Category) -> PolicyView:
    """Drops the override: the category goes back to its configured policy."""
    state = a.state
    async with state.lock:
        old = state.overrides.get(category)
        if old is None:
            raise NotFound(f"category {category!r} has no admin policy", param="category")
        audit = a.audit("policy", "delete", category, old.fields, None)
        state.own.add(await state.store.delete_policy(category, audit, a.now()))
        await state.reload({"policy"})
    return _view(a, category)


@router.get("/audit", response_model=AuditPage, tags=["admin: audit"])
async def audit(
    a: AdminDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    kind: Annotated[
        str | None, Query(pattern="^(policy|key|router|category|cache|limit|tenant)$")
    ] = None,
) -> AuditPage:
    """Every admin change, newest first."""
    rows, total = await a.state.store.audit(offset=offset, limit=limit, kind=kind)
    return AuditPage(
        data=[AuditItem.model_validate(vars(r)) for r in rows],
        total=total,
        offset=offset,
        limit=limit,
    )
