"""API keys → tenants, and the admin key.

Secrets never live in the config file: a key's value comes from the env var
the config names. Keys are held as SHA-256 digests and looked up by digest,
so comparing a presented key never branches on its characters; the admin key
is compared with :func:`hmac.compare_digest`.

Each client key has a non-secret id, used in usage counters, metrics, the admin
API and the audit trail: ``cfg:<key_env>`` for a key from the configuration file
(the env var's name), the admin record's ``key_<digest prefix>`` for an API-made one.
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
    key_id: str | None  # the key's non-secret id (None: no key, open mode)
    admin: bool = False


@dataclass(frozen=True)
class ClientKey:
    tenant: str
    key_id: str
    configured: bool  # from the configuration file (revocable only through SQL)


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def configured_key_id(key_env: str) -> str:
    return "cfg:" + key_env


class Authenticator:
    def __init__(
        self,
        *,
        keys: Mapping[str, ClientKey],  # digest → key
        admin_key: str | None,
        require_keys: bool,
    ) -> None:
        self._keys = dict(keys)
        self._revoked: set[str] = set()
        self._admin_digest = key_digest(admin_key) if admin_key else None
        self.require_keys = require_keys

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str]) -> Authenticator:
        keys: dict[str, ClientKey] = {}
        for spec in settings.auth.keys:
            secret = env.get(spec.key_env)
            if secret:
                keys[key_digest(secret)] = ClientKey(
                    spec.tenant, configured_key_id(spec.key_env), configured=True
                )
        return cls(
            keys=keys,
            admin_key=env.get(settings.auth.admin_key_env) or None,
            require_keys=settings.keys_required,
        )

    def add_key(self, digest: str, tenant: str, key_id: str) -> None:
        if digest not in self._revoked:
            self._keys[digest] = ClientKey(tenant, key_id, configured=False)

    def revoke_key(self, digest: str) -> None:
        self._keys.pop(digest, None)
        self._revoked.add(digest)

    def configured_keys(self, tenant: str | None = None) -> dict[str, str]:
        """Configuration-file keys still accepted (of ``tenant``): key id → digest."""
        return {
            k.key_id: digest
            for digest, k in self._keys.items()
            if k.configured and (tenant is None or k.tenant == tenant)
        }

    def active_keys(self) -> dict[str, str]:
        """Every key still accepted: key id → tenant."""
        return {k.key_id: k.tenant for k in self._keys.values()}

    def client(self, authorization: str | None) -> Principal:
        secret = _bearer(authorization)
        if secret is None:
            if self.require_keys:
                raise Unauthorized(
                    "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
                )
            return Principal(tenant=DEFAULT_TENANT, key_id=None)
        digest = key_digest(secret)
        key = self._keys.get(digest)
        if key is not None:
            return Principal(tenant=key.tenant, key_id=key.key_id)
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
