"""SQL behind the usage limits and the request log (migration ``0003_limits_request_log``).

``limit_counters`` holds one row per (tenant, kind, window): every replica adds
its local deltas to it and reads the global totals back (see ``proxy.limits``).
``limit_overrides`` holds per-tenant limits set through the admin API.
``request_log`` is the per-request record for router training (``proxy.request_log``).
Driver errors become :class:`proxy.errors.Unavailable`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from cache import migrate_async
from proxy.errors import Unavailable
from proxy.sqlengine import is_memory, make_engine

metadata = sa.MetaData()
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, ConnectionError)

limit_counters = sa.Table(
    "limit_counters",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # requests | tokens | cost
    sa.Column("window_no", sa.BigInteger(), primary_key=True),  # floor(epoch / window length)
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
)

limit_overrides = sa.Table(
    "limit_overrides",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("fields", sa.Text(), nullable=False),  # JSON: only the limits an operator set
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

request_log = sa.Table(
    "request_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("at", sa.Float(), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("cache", sa.String(8), nullable=False),  # hit | miss | bypass
    sa.Column("tier", sa.String(16), nullable=True),
    sa.Column("backend", sa.String(255), nullable=True),
    sa.Column("router_score", sa.Float(), nullable=True),
    sa.Column("prompt", sa.Text(), nullable=True),  # only where the tenant allows it
    sa.Column("prompt_tokens", sa.Integer(), nullable=False),
    sa.Column("completion_tokens", sa.Integer(), nullable=False),
    sa.Column("response_id", sa.String(128), nullable=True),
    sa.Column("rating", sa.Float(), nullable=True),
    sa.Column("rated_at", sa.Float(), nullable=True),
    sa.Index("ix_request_log_tenant_at", "tenant", "at"),
    sa.Index("ix_request_log_at", "at"),
    sa.Index("ix_request_log_response_id", "response_id"),
)

C, OV = limit_counters.c, limit_overrides.c
CounterKey = tuple[str, str, int]  # tenant, kind, window


class OpsStore:
    """The engine shared by the limiter and the request log. Its engine connects on
    first use, so a store that is down at start-up is used once it comes back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name

    async def prepare(self) -> None:
        """Migrates the database (an in-memory SQLite gets the tables directly).
        Raises Unavailable."""
        try:
            if is_memory(self.url):
                async with self.engine.begin() as conn:
                    await conn.run_sync(metadata.create_all)
                return
            # Probe on this loop first: a connection failing inside the migration's
            # short-lived loop would leave aiosqlite's thread posting to a closed loop.
            async with self.engine.connect():
                pass
            await migrate_async(self.url)
        except DB_ERRORS as exc:
            raise Unavailable(f"limits/log store unavailable: {exc}") from exc

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise Unavailable(f"limits/log store unavailable: {exc}") from exc

    # -- counters -------------------------------------------------------------------------
    async def add_and_read(
        self, deltas: Mapping[CounterKey, float], windows: Iterable[tuple[str, int]], now: float
    ) -> dict[CounterKey, float]:
        """Adds ``deltas`` to their rows and returns every tenant's totals in ``windows``
        ((kind, window) pairs), in one transaction."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        async with self.begin() as conn:
            for (tenant, kind, window), delta in sorted(deltas.items()):
                stmt = insert(limit_counters).values(
                    tenant=tenant, kind=kind, window_no=window, value=delta, updated_at=now
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=["tenant", "kind", "window_no"],
                    set_={"value": limit_counters.c.value + delta, "updated_at": now},
                )
                await conn.execute(stmt)
            wanted = sa.or_(*(sa.and_(C.kind == k, C.window_no == w) for k, w in windows))
            rows = await conn.execute(
                sa.select(C.tenant, C.kind, C.window_no, C.value).where(wanted)
            )
            return {(r.tenant, r.kind, int(r.window_no)): float(r.value) for r in rows}

    async def prune_counters(self, oldest: Mapping[str, int]) -> int:
        """Deletes windows older than ``oldest`` (kind -> first window kept)."""
        old = sa.or_(*(sa.and_(C.kind == k, C.window_no < w) for k, w in oldest.items()))
        async with self.begin() as conn:
            return int((await conn.execute(sa.delete(limit_counters).where(old))).rowcount or 0)

    async def delete_tenant_counters(self, tenant: str) -> None:
        async with self.begin() as conn:
            await conn.execute(sa.delete(limit_counters).where(C.tenant == tenant))

    # -- overrides ------------------------------------------------------------------------
    async def overrides(self) -> dict[str, dict[str, Any]]:
        async with self.begin() as conn:
            rows = await conn.execute(sa.select(OV.tenant, OV.fields))
            return {r.tenant: dict(json.loads(r.fields)) for r in rows}

    async def put_override(
        self, tenant: str, fields: Mapping[str, Any], now: float, actor: str
    ) -> None:
        async with self.begin() as conn:
            await conn.execute(sa.delete(limit_overrides).where(OV.tenant == tenant))
            row = {
                "tenant": tenant,
                "fields": json.dumps(dict(fields), sort_keys=True),
                "updated_at": now,
                "updated_by": actor[:128],
            }
            await conn.execute(sa.insert(limit_overrides), row)

    async def delete_override(self, tenant: str) -> bool:
        async with self.begin() as conn:
            result = await conn.execute(sa.delete(limit_overrides).where(OV.tenant == tenant))
            return bool(result.rowcount)

    # -- request log ----------------------------------------------------------------------
    async def insert_log(self, rows: Iterable[Mapping[str, Any]]) -> None:
        batch = [dict(r) for r in rows]
        if batch:
            async with self.begin() as conn:
                await conn.execute(sa.insert(request_log), batch)
