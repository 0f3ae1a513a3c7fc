"""SQL behind the usage limits and the request log (migration ``0003_limits_request_log``).

``limit_counters`` holds one row per (scope, subject, kind, window), a subject
being a tenant or an API key's id (migration ``0004_key_limits`` added the
scope): every replica adds its local deltas to it and reads the global totals
back (see ``proxy.limits``). ``limit_overrides`` holds the limits of a tenant or
a key set through the admin API.
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
    sa.Column("scope", sa.String(8), primary_key=True),  # tenant | key
    sa.Column("subject", sa.String(160), primary_key=True),  # a tenant name or a key id
    sa.Column("kind", sa.String(16), primary_key=True),  # requests | tokens | cost
    sa.Column("window_no", sa.BigInteger(), primary_key=True),  # floor(epoch / window length)
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
)

limit_overrides = sa.Table(
    "limit_overrides",
    metadata,
    sa.Column("scope", sa.String(8), primary_key=True),
    sa.Column("subject", sa.String(160), primary_key=True),
    sa.Column("fields", sa.Text(), nullable=False),  # JSON: only the limits an operator set
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

#: Longest response id the request log keeps (its column's width).
ID_CHARS = 128
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
    sa.Column("response_id", sa.String(ID_CHARS), nullable=True),
    sa.Column("rating", sa.Float(), nullable=True),
    sa.Column("rated_at", sa.Float(), nullable=True),
    sa.Index("ix_request_log_tenant_at", "tenant", "at"),
    sa.Index("ix_request_log_at", "at"),
    sa.Index("ix_request_log_response_id", "response_id"),
)

C, OV = limit_counters.c, limit_overrides.c
CounterKey = tuple[str, str, str, int]  # scope, subject, kind, window
Subject = tuple[str, str]  # scope (tenant | key), name


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
        """Adds ``deltas`` to their rows and returns every subject's totals in ``windows``
        ((kind, window) pairs), in one transaction."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        async with self.begin() as conn:
            # Sorted, so concurrent replicas lock rows in one order (no deadlock).
            for (scope, subject, kind, window), delta in sorted(deltas.items()):
                stmt = insert(limit_counters).values(
                    scope=scope,
                    subject=subject,
                    kind=kind,
                    window_no=window,
                    value=delta,
                    updated_at=now,
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=["scope", "subject", "kind", "window_no"],
                    set_={"value": limit_counters.c.value + delta, "updated_at": now},
                )
                await conn.execute(stmt)
            wanted = sa.or_(*(sa.and_(C.kind == k, C.window_no == w) for k, w in windows))
            rows = await conn.execute(
                sa.select(C.scope, C.subject, C.kind, C.window_no, C.value).where(wanted)
            )
            return {(r.scope, r.subject, r.kind, int(r.window_no)): float(r.value) for r in rows}

    async def prune_counters(self, oldest: Mapping[str, int]) -> int:
        """Deletes windows older than ``oldest`` (kind -> first window kept)."""
        old = sa.or_(*(sa.and_(C.kind == k, C.window_no < w) for k, w in oldest.items()))
        async with self.begin() as conn:
            return int((await conn.execute(sa.delete(limit_counters).where(old))).rowcount or 0)

    async def delete_counters(self, subjects: Iterable[Subject]) -> None:
        async with self.begin() as conn:
            for scope, name in subjects:
                where = sa.and_(C.scope == scope, C.subject == name)
                await conn.execute(sa.delete(limit_counters).where(where))

    # -- overrides ------------------------------------------------------------------------
    async def overrides(self) -> dict[Subject, dict[str, Any]]:
        async with self.begin() as conn:
            rows = await conn.execute(sa.select(OV.scope, OV.subject, OV.fields))
            return {(r.scope, r.subject): dict(json.loads(r.fields)) for r in rows}

    async def put_override(
        self, subject: Subject, fields: Mapping[str, Any], now: float, actor: str
    ) -> None:
        scope, name = subject
        async with self.begin() as conn:
            where = sa.and_(OV.scope == scope, OV.subject == name)
            await conn.execute(sa.delete(limit_overrides).where(where))
            row = {
                "scope": scope,
                "subject": name,
                "fields": json.dumps(dict(fields), sort_keys=True),
                "updated_at": now,
                "updated_by": actor[:128],
            }
            await conn.execute(sa.insert(limit_overrides), row)

    async def delete_override(self, subject: Subject) -> bool:
        scope, name = subject
        where = sa.and_(OV.scope == scope, OV.subject == name)
        async with self.begin() as conn:
            result = await conn.execute(sa.delete(limit_overrides).where(where))
            return bool(result.rowcount)

    # -- request log ----------------------------------------------------------------------
    async def insert_log(self, rows: Iterable[Mapping[str, Any]]) -> None:
        # PostgreSQL's text type cannot hold NUL, and one prompt (or a backend's response
        # id) with a "\\u0000" would fail the whole batch: replaced by U+FFFD.
        batch = [
            {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in r.items()}
            for r in rows
        ]
        if batch:
            async with self.begin() as conn:
                await conn.execute(sa.insert(request_log), batch)
