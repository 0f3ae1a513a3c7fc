"""API keys → tenants, and the admin key.

Secrets never live in the config file: a key's value comes from the env var
the config names. Keys are held as SHA-256 digests and looked up by digest,
so comparing a presented key never branches on its characters; the admin key
is compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.errors import Forbidden, Unauthorized
from proxy.settings import Settings

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str | None  # digest prefix of the key used (never the key itself)
    admin: bool = False


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Authenticator:
    def __init__(
        self,
        *,
        keys: Mapping[str, str],  # digest → tenant
        admin_key: str | None,
        require_keys: bool,
    ) -> None:
        self._keys = dict(keys)
        self._revoked: set[str] = set()
        self._admin_digest = key_digest(admin_key) if admin_key else None
        self.require_keys = require_keys

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str]) -> Authenticator:
        keys: dict[str, str] = {}
        for spec in settings.auth.keys:
            secret = env.get(spec.key_env)
            if secret:
                keys[key_digest(secret)] = spec.tenant
        return cls(
            keys=keys,
            admin_key=env.get(settings.auth.admin_key_env) or None,
            require_keys=settings.keys_required,
        )

    def add_key(self, digest: str, tenant: str) -> None:
        self._keys[digest] = tenant

    def revoke_key(self, digest: str) -> None:
        self._keys.pop(digest, None)
        self._revoked.add(digest)

    def client(self, authorization: str | None) -> Principal:
        secret = _bearer(authorization)
        if secret is None:
            if self.require_keys:
                raise Unauthorized(
                    "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
                )
            return Principal(tenant=DEFAULT_TENANT, key_id=None)
        digest = key_digest(secret)
        tenant = self._keys.get(digest)
        if tenant is not None:
            return Principal(tenant=tenant, key_id=digest[:12])
        if self._is_admin(digest):
            return Principal(tenant=DEFAULT_TENANT, key_id="admin", admin=True)
        if not self.require_keys and digest not in self._revoked:
            # Open mode (the loopback default): an unknown bearer value is served as
            # tenant 'default', like vLLM without --api-key; known keys keep their
            # tenants, and a revoked key is refused even here.
            return Principal(tenant=DEFAULT_TENANT, key_id=None)
        raise Unauthorized("invalid API key", code="invalid_api_key")

    def admin(self, authorization: str | None) -> Principal:
        secret = _bearer(authorization)
        if secret is None:
            raise Unauthorized("missing admin key: send 'Authorization: Bearer <admin key>'")
        if self._admin_digest is None:
            raise Forbidden("the admin API is disabled: no admin key is configured")
        if not self._is_admin(key_digest(secret)):
            if key_digest(secret) in self._keys:
                raise Forbidden("this key is a client key, not the admin key")
            raise Unauthorized("invalid admin key", code="invalid_api_key")
        return Principal(tenant=DEFAULT_TENANT, key_id="admin", admin=True)

    def _is_admin(self, digest: str) -> bool:
        return self._admin_digest is not None and hmac.compare_digest(digest, self._admin_digest)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
