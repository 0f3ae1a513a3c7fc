"""/admin/keys: client API keys per tenant, made and revoked at run time.

A key is ``cg-`` plus 256 random bits from :mod:`secrets`, shown once in the
create response; only its SHA-256 digest is stored. Every replica's
authenticator picks up new and revoked keys through the change feed.

A key from the configuration file (id ``cfg:<key_env>``) can be revoked too: its
digest goes to ``admin_revoked_keys`` and every replica refuses it from its next
poll, though the file still names it (give the env var a new secret to use it again).
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter

from proxy.admin.deps import AdminDep
from proxy.admin.models import KeyCreate, KeyCreated, KeyList, KeyView
from proxy.admin.state import AdminState
from proxy.admin.store import KeyRecord, RevokedKey
from proxy.auth import key_digest
from proxy.errors import NotFound

router = APIRouter(prefix="/keys", tags=["admin: keys"])
PREFIX = "cg-"


def _view(k: KeyRecord) -> KeyView:
    return KeyView(
        id=k.id,
        tenant=k.tenant,
        name=k.name,
        created_at=k.created_at,
        created_by=k.created_by,
        revoked_at=k.revoked_at,
        revoked=k.revoked_at is not None,
    )


@router.post("", response_model=KeyCreated, status_code=201)
async def create_key(a: AdminDep, body: KeyCreate) -> KeyCreated:
    state = a.state
    secret = PREFIX + secrets.token_urlsafe(32)
    digest = key_digest(secret)
    record = KeyRecord(
        id="key_" + digest[:16],
        digest=digest,
        tenant=body.tenant,
        name=body.name,
        created_at=a.now(),
        created_by=a.actor,
        revoked_at=None,
    )
    new = {"id": record.id, "tenant": record.tenant, "name": record.name}
    async with state.lock:
        state.own.add(
            await state.store.add_key(record, a.audit("key", "create", record.id, None, new))
        )
        await state.reload({"key"})
    return KeyCreated(**_view(record).model_dump(), key=secret)


@router.get("", response_model=KeyList)
async def list_keys(a: AdminDep) -> KeyList:
    """Keys made through this API (never their secrets), oldest first."""
    return KeyList(data=[_view(k) for k in a.state.keys.values()])


@router.delete("/{key_id}", response_model=KeyView)
async def revoke_key(a: AdminDep, key_id: str) -> KeyView:
    """Revokes a key on every replica within a poll interval (this one at once)."""
    state = a.state
    async with state.lock:
        configured = a.services.auth.configured_keys()
        if key_id in configured:
            tenant = a.services.auth.active_keys()[key_id]
            await revoke_configured(a, state, {key_id: configured[key_id]}, tenant)
            revoked = state.revoked_configured[-1]
            return KeyView(
                id=key_id, tenant=tenant, name=key_id, created_at=0.0, created_by="config",
                revoked_at=revoked.revoked_at, revoked=True,
            )  # fmt: skip
        k = state.keys.get(key_id)
        if k is None or k.revoked_at is not None:
            raise NotFound(f"no active key {key_id!r}", param="key_id")
        audit = a.audit("key", "revoke", key_id, {"tenant": k.tenant, "name": k.name}, None)
        state.own.add(await state.store.revoke_key(key_id, audit, a.now()))
        await state.reload({"key"})
    return _view(state.keys[key_id])


async def revoke_configured(
    a: AdminDep, state: AdminState, keys: dict[str, str], tenant: str
) -> None:
    """Records configuration-file keys (id → digest) as revoked; the caller holds
    ``state.lock``. Audited as one ``key``/``revoke_configured`` change."""
    now = a.now()
    rows = [
        RevokedKey(digest, key_id, tenant, now, a.actor[:128]) for key_id, digest in keys.items()
    ]
    audit = a.audit("key", "revoke_configured", tenant, None, {"keys": sorted(keys)})
    state.own.add(await state.store.revoke_configured(rows, audit, now))
    await state.reload({"key"})
