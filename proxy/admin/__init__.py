"""The admin REST API under ``/admin``, guarded by the admin key.

Policies, categories, cache entries, router settings, backend status and client
keys; every change is stored in SQL with an audit row and reaches every replica
through that audit table, which doubles as the change feed (see ``state``).
"""

from fastapi import APIRouter, Depends, FastAPI

from proxy.admin import (
    routes_cache,
    routes_categories,
    routes_keys,
    routes_limits,
    routes_policies,
    routes_router,
    routes_tenants,
)
from proxy.admin.deps import ERRORS, admin
from proxy.admin.state import AdminState, start_admin

router = APIRouter(prefix="/admin", dependencies=[Depends(admin)], responses=ERRORS)
for _part in (routes_policies, routes_categories, routes_cache, routes_router, routes_keys):
    router.include_router(_part.router)
for _part in (routes_limits, routes_tenants):
    router.include_router(_part.router)


def install(app: FastAPI) -> None:
    """Adds the routes (their domain errors are mapped by ``proxy.http``'s handlers)."""
    app.include_router(router)


__all__ = ["AdminState", "install", "router", "start_admin"]
