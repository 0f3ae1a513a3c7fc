"""The admin REST API under ``/admin``, guarded by the admin key.

Policies, categories, cache entries, router settings, backend status and client
keys; every change is stored in SQL with an audit row and reaches every replica
through that audit table, which doubles as the change feed (see ``state``).
"""

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from cache import CacheError
from classifier import ClassifierError
from proxy.admin import (
    routes_cache,
    routes_categories,
    routes_keys,
    routes_policies,
    routes_router,
)
from proxy.admin.deps import ERRORS, admin
from proxy.admin.state import AdminState, start_admin
from proxy.errors import body_for
from router import RouterError

router = APIRouter(prefix="/admin", dependencies=[Depends(admin)], responses=ERRORS)
for _part in (routes_policies, routes_categories, routes_cache, routes_router, routes_keys):
    router.include_router(_part.router)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status, body = body_for(exc)
    return JSONResponse(body, status_code=status)


def install(app: FastAPI) -> None:
    """Adds the routes, and answers the domain errors they let through (unknown
    category, entry gone, cache store down ...) from ``proxy.errors.STATUS_TABLE``."""
    app.include_router(router)
    for cls in (CacheError, ClassifierError, RouterError):
        app.add_exception_handler(cls, _domain_error)


__all__ = ["AdminState", "install", "router", "start_admin"]
