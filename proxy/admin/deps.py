"""The admin guard and the per-request context every admin route receives."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from proxy.admin.models import ErrorEnvelope
from proxy.admin.state import AdminState, now
from proxy.admin.store import Audit
from proxy.errors import InvalidRequest, Unavailable
from proxy.http import request_id
from proxy.services import Services

ACTOR_HEADER = "x-cachegate-actor"
_ACTOR = re.compile(r"[^A-Za-z0-9_.@:+\-]")

# Documents the scheme in OpenAPI; the check itself is Authenticator.admin below.
_bearer = HTTPBearer(auto_error=False, description="the admin key", scheme_name="AdminKey")

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": text}
    for status, text in (
        (400, "a value was refused (param names it)"),
        (401, "missing or invalid admin key"),
        (403, "a client key, or no admin key configured"),
        (404, "not found"),
        (422, "a field has the wrong type (param names it)"),
        (503, "the store this call needs is unavailable"),
    )
}


@dataclass(frozen=True)
class Admin:
    services: Services
    actor: str
    request_id: str

    @property
    def state(self) -> AdminState:
        if self.services.admin is None:
            raise Unavailable(
                "the admin store is unavailable (see the server log); changes cannot be "
                "recorded now"
            )
        return self.services.admin

    def audit(self, kind: str, action: str, target: str, old: Any = None, new: Any = None) -> Audit:
        return Audit(self.actor, self.request_id, kind, action, target, old, new)

    @staticmethod
    def now() -> float:
        return now()


def admin(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Admin:
    s: Services = request.app.state.services
    s.auth.admin(request.headers.get("authorization"))
    # The admin key is shared: an operator may name themselves for the audit trail.
    named = _ACTOR.sub("", request.headers.get(ACTOR_HEADER, ""))[:64]
    return Admin(s, f"admin:{named}" if named else "admin", request_id(request))


AdminDep = Annotated[Admin, Depends(admin)]


def param_of(message: str, fields: tuple[str, ...]) -> str | None:
    """The field a domain error message starts with ("ttl_seconds must be > 0, ...")."""
    head = re.match(r"\w+", message)
    return head.group(0) if head and head.group(0) in fields else None


def refuse(exc: Exception, fields: tuple[str, ...], *, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(str(exc), param=param or param_of(str(exc), fields))
