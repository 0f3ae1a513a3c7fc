"""One engine factory for proxy's own tables (admin state, limits, request log)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from cache.store import is_memory as is_memory  # re-exported: one rule for every store


def make_engine(url: str) -> AsyncEngine:
    # hide_parameters: a driver error's message never carries prompt text into the logs.
    if is_memory(url):
        return create_async_engine(url, poolclass=StaticPool, hide_parameters=True)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 5}, hide_parameters=True)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=2,
        connect_args={"timeout": 3},
        hide_parameters=True,
    )
