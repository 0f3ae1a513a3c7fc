"""Health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from proxy.routes_openai import services

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    s = services(request)
    backends = {b.name: b.status().circuit for b in s.pool.backends}
    any_up = any(b.circuit.available() for b in s.pool.backends)
    ready = s.ready and any_up
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "backends": backends},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    s = services(request)
    await s.refresh_cache_snapshot()
    return Response(s.metrics.render(), media_type=CONTENT_TYPE_LATEST)
