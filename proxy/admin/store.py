"""Typed async access to the admin tables.

Every write runs in one transaction with its audit row, whose id is the change
sequence replicas poll. On PostgreSQL writers first take one advisory lock, so
ids become visible in commit order and a poller reading ``id > last`` never
skips a change that commits late. Driver errors become :class:`Unavailable`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cache import migrate_async
from proxy.admin.schema import (
    admin_audit,
    admin_keys,
    admin_policies,
    admin_revoked_keys,
    admin_settings,
    metadata,
)
from proxy.errors import Unavailable
from proxy.sqlengine import is_memory, make_engine

_ADMIN_LOCK = 0x61646D6E  # "admn": serialises admin writers on PostgreSQL
_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, ConnectionError)


def _reason(exc: BaseException) -> str:
    """The driver's own message: this one reaches admin clients in a 503, and
    SQLAlchemy's text goes on with the SQL statement and a link to its docs."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, BaseException):
        cause = exc.orig
    lines = str(cause).splitlines()
    return lines[0] if lines else repr(cause)


A, K, P, S = admin_audit.c, admin_keys.c, admin_policies.c, admin_settings.c
RK = admin_revoked_keys.c
Write = Callable[[AsyncConnection], Awaitable[None]]


@dataclass(frozen=True)
class Audit:
    """What one change records: who, what, and the values before and after."""

    actor: str
    request_id: str | None
    kind: str  # policy | key | router | category | cache
    action: str
    target: str
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    request_id: str | None
    kind: str
    action: str
    target: str
    old: Any
    new: Any


@dataclass(frozen=True)
class PolicyOverride:
    category: str
    fields: dict[str, Any]
    updated_at: float
    updated_by: str


@dataclass(frozen=True)
class KeyRecord:
    id: str
    digest: str
    tenant: str
    name: str
    created_at: float
    created_by: str
    revoked_at: float | None


@dataclass(frozen=True)
class RevokedKey:
    """A configuration-file key revoked through the admin API (by its digest)."""

    digest: str
    key_id: str
    tenant: str
    revoked_at: float
    revoked_by: str


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class AdminStore:
    """Build with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    @classmethod
    async def open(cls, url: str) -> AdminStore:
        """Migrates the database (an in-memory SQLite gets the tables directly)."""
        try:
            if is_memory(url):
                engine = make_engine(url)
                async with engine.begin() as conn:
                    await conn.run_sync(metadata.create_all)
                return cls(engine)
            engine = make_engine(url)
            try:
                # Probe on this loop first: a connection failing inside the migration's
                # short-lived loop would leave aiosqlite's thread posting to a closed loop.
                async with engine.connect():
                    pass
                await migrate_async(url)
            except BaseException:
                await engine.dispose()
                raise
        except _DB_ERRORS as exc:
            raise Unavailable(f"admin store unavailable: {_reason(exc)}") from exc
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise Unavailable(f"admin store unavailable: {_reason(exc)}") from exc

    async def write(self, audit: Audit, change: Write | None = None, *, now: float) -> int:
        """Runs ``change`` and appends ``audit`` in one transaction; returns the audit id."""
        try:
            async with self.engine.begin() as conn:
                if self.is_postgres:
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADMIN_LOCK)))
                if change is not None:
                    await change(conn)
                row = {
                    "at": now,
                    "actor": audit.actor[:128],
                    "request_id": audit.request_id,
                    "kind": audit.kind,
                    "action": audit.action,
                    "target": audit.target[:255],
                    "old": _dump(audit.old),
                    "new": _dump(audit.new),
                }
                result = await conn.execute(sa.insert(admin_audit).returning(A.id), row)
                return int(result.scalar_one())
        except _DB_ERRORS as exc:
            raise Unavailable(f"admin store unavailable: {_reason(exc)}") from exc

    # -- policies -----------------------------------------------------------------------
    async def put_policy(self, o: PolicyOverride, audit: Audit) -> int:
        async def change(conn: AsyncConnection) -> None:
            await conn.execute(sa.delete(admin_policies).where(P.category == o.category))
            await conn.execute(
                sa.insert(admin_policies),
                {
                    "category": o.category,
                    "overrides": json.dumps(o.fields, sort_keys=True),
                    "updated_at": o.updated_at,
                    "updated_by": o.updated_by[:128],
                },
            )

        return await self.write(audit, change, now=o.updated_at)

    async def delete_policy(self, category: str, audit: Audit, now: float) -> int:
        async def change(conn: AsyncConnection) -> None:
            await conn.execute(sa.delete(admin_policies).where(P.category == category))

        return await self.write(audit, change, now=now)

    async def policies(self) -> dict[str, PolicyOverride]:
        async with self._read() as conn:
            rows = await conn.execute(sa.select(admin_policies))
            return {
                r.category: PolicyOverride(
                    r.category, json.loads(r.overrides), r.updated_at, r.updated_by
                )
                for r in rows
            }

    # -- keys ---------------------------------------------------------------------------
    async def add_key(self, k: KeyRecord, audit: Audit) -> int:
        async def change(conn: AsyncConnection) -> None:
            await conn.execute(sa.insert(admin_keys), vars(k))

        return await self.write(audit, change, now=k.created_at)

    async def revoke_key(self, key_id: str, audit: Audit, now: float) -> int:
        async def change(conn: AsyncConnection) -> None:
            stmt = sa.update(admin_keys).where(K.id == key_id, K.revoked_at.is_(None))
            await conn.execute(stmt.values(revoked_at=now))

        return await self.write(audit, change, now=now)

    async def keys(self) -> list[KeyRecord]:
        async with self._read() as conn:
            rows = await conn.execute(sa.select(admin_keys).order_by(K.created_at, K.id))
            return [KeyRecord(**r._mapping) for r in rows]

    async def revoke_configured(self, keys: list[RevokedKey], audit: Audit, now: float) -> int:
        async def change(conn: AsyncConnection) -> None:
            for k in keys:
                await conn.execute(sa.delete(admin_revoked_keys).where(RK.digest == k.digest))
                await conn.execute(sa.insert(admin_revoked_keys), vars(k))

        return await self.write(audit, change, now=now)

    async def revoked_configured(self) -> list[RevokedKey]:
        async with self._read() as conn:
            rows = await conn.execute(sa.select(admin_revoked_keys).order_by(RK.revoked_at))
            return [RevokedKey(**r._mapping) for r in rows]

    # -- settings -----------------------------------------------------------------------
    async def put_setting(self, name: str, value: dict[str, Any], audit: Audit, now: float) -> int:
        async def change(conn: AsyncConnection) -> None:
            await conn.execute(sa.delete(admin_settings).where(S.name == name))
            row = {"name": name, "value": json.dumps(value, sort_keys=True), "updated_at": now}
            await conn.execute(sa.insert(admin_settings), row)

        return await self.write(audit, change, now=now)

    async def setting(self, name: str) -> dict[str, Any] | None:
        async with self._read() as conn:
            value = (await conn.execute(sa.select(S.value).where(S.name == name))).scalar()
            return None if value is None else dict(json.loads(value))

    # -- audit / change feed ------------------------------------------------------------
    async def audit(
        self, *, offset: int, limit: int, kind: str | None = None
    ) -> tuple[list[AuditEntry], int]:
        where = sa.true() if kind is None else A.kind == kind
        page = sa.select(admin_audit).where(where).order_by(A.id.desc()).offset(offset)
        async with self._read() as conn:
            rows = list(await conn.execute(page.limit(limit)))
            count = sa.select(sa.func.count()).select_from(admin_audit).where(where)
            total = (await conn.execute(count)).scalar_one()
        return [_entry(r) for r in rows], int(total)

    async def max_seq(self) -> int:
        async with self._read() as conn:
            return int((await conn.execute(sa.select(sa.func.max(A.id)))).scalar() or 0)

    async def changes_since(self, seq: int, limit: int = 1000) -> list[AuditEntry]:
        stmt = sa.select(admin_audit).where(A.id > seq).order_by(A.id).limit(limit)
        async with self._read() as conn:
            return [_entry(r) for r in await conn.execute(stmt)]

    async def category_ops(self) -> list[AuditEntry]:
        """Every classifier change ever made, oldest first (replayed at start-up)."""
        stmt = sa.select(admin_audit).where(A.kind == "category").order_by(A.id)
        async with self._read() as conn:
            return [_entry(r) for r in await conn.execute(stmt)]


def _entry(r: sa.Row[Any]) -> AuditEntry:
    return AuditEntry(
        id=int(r.id),
        at=r.at,
        actor=r.actor,
        request_id=r.request_id,
        kind=r.kind,
        action=r.action,
        target=r.target,
        old=_load(r.old),
        new=_load(r.new),
    )
