"""/admin/router (threshold, target large share, per-category overrides) and
/admin/backends (live status of every backend)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from proxy.admin.deps import AdminDep, refuse
from proxy.admin.models import (
    BackendList,
    BackendView,
    ExamplesView,
    RecalibrateBody,
    RouterPatch,
    RouterView,
)
from proxy.admin.state import ROUTER_SETTING
from proxy.errors import InvalidRequest
from router import RouterError, calibrate_threshold, large_share_at

router = APIRouter(tags=["admin: router"])
FIELDS = ("threshold", "target_large_share", "category_overrides")


def _view(a: AdminDep) -> RouterView:
    s = a.services
    cfg, ex = s.router_config, s.examples
    threshold = s.router.threshold if s.router is not None else cfg.threshold
    scores = list(s.router_scores)
    setting = a.state.router_setting if s.admin is not None else {}
    return RouterView(
        enabled=s.router is not None,
        kind=cfg.kind,
        threshold=threshold,
        configured_threshold=a.state.configured_router.threshold
        if s.admin is not None
        else cfg.threshold,
        target_large_share=setting.get("target_large_share"),
        category_overrides=dict(cfg.category_overrides),
        examples=ExamplesView(
            enabled=ex.enabled,
            k=ex.k,
            token_budget=ex.token_budget,
            similarity_floor=ex.similarity_floor,
            per_category=dict(ex.per_category),
        ),
        recent_scores=len(scores),
        recent_large_share=large_share_at(scores, threshold)
        if scores and threshold is not None
        else None,
    )


def _calibrated(a: AdminDep, share: float) -> float:
    scores = list(a.services.router_scores)
    if not scores:
        raise InvalidRequest(
            "no recent router scores to calibrate on yet: send some traffic through "
            "model 'auto' first, or set threshold directly",
            param="target_large_share",
        )
    try:
        return calibrate_threshold(scores, share)
    except RouterError as exc:
        raise refuse(exc, FIELDS, param="target_large_share") from None


async def _save(a: AdminDep, setting: dict[str, Any], action: str) -> RouterView:
    state = a.state
    try:
        config = state.router_config(setting)
    except RouterError as exc:
        raise refuse(exc, FIELDS) from None
    audit = a.audit("router", action, ROUTER_SETTING, state.router_setting or None, setting)
    state.own.add(await state.store.put_setting(ROUTER_SETTING, setting, audit, a.now()))
    state.router_setting = setting
    state.apply_router(config)
    return _view(a)


@router.get("/router", response_model=RouterView)
async def read_router(a: AdminDep) -> RouterView:
    return _view(a)


@router.patch("/router", response_model=RouterView)
async def patch_router(a: AdminDep, body: RouterPatch) -> RouterView:
    """``target_large_share`` picks the threshold that would have sent that share of this
    replica's recent requests to the large model; all replicas then use that threshold."""
    sent = body.model_fields_set
    if "threshold" in sent and "target_large_share" in sent:
        raise InvalidRequest(
            "send threshold or target_large_share, not both", param="target_large_share"
        )
    async with a.state.lock:
        setting = dict(a.state.router_setting)
        if "threshold" in sent:
            setting["threshold"] = body.threshold
            setting.pop("target_large_share", None)
        if body.target_large_share is not None:
            setting["threshold"] = _calibrated(a, body.target_large_share)
            setting["target_large_share"] = body.target_large_share
        if body.category_overrides is not None:
            setting["category_overrides"] = body.category_overrides
        return await _save(a, setting, "patch")


@router.post("/router/recalibrate", response_model=RouterView)
async def recalibrate(a: AdminDep, body: RecalibrateBody | None = None) -> RouterView:
    """Recomputes the threshold for the target share from the latest scores."""
    async with a.state.lock:
        setting = dict(a.state.router_setting)
        share = body.target_large_share if body is not None else None
        share = share if share is not None else setting.get("target_large_share")
        if share is None:
            raise InvalidRequest(
                "no target_large_share set yet: send one", param="target_large_share"
            )
        setting["threshold"] = _calibrated(a, share)
        setting["target_large_share"] = share
        return await _save(a, setting, "recalibrate")


@router.delete("/router", response_model=RouterView)
async def reset_router(a: AdminDep) -> RouterView:
    """Back to the configured threshold and overrides."""
    async with a.state.lock:
        return await _save(a, {}, "reset")


@router.get("/backends", response_model=BackendList, tags=["admin: backends"])
async def backends(a: AdminDep) -> BackendList:
    return BackendList(
        data=[BackendView.model_validate(vars(b.status())) for b in a.services.pool.backends]
    )
