"""Runs the Alembic migrations shipped in the ``migrations`` package."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the installed ``migrations`` package and ``url``."""
    location = resources.files("migrations")
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    # Config values go through ConfigParser interpolation: escape '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """``alembic upgrade head`` on ``url`` (an async SQLAlchemy URL).

    The environment runs an async engine under ``asyncio.run``; when called from a
    thread that already runs an event loop it runs in a helper thread instead
    (from async code prefer :func:`migrate_async`, which does not block the loop).
    """
    cfg = alembic_config(url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(cfg, "head")
        return
    # A worker thread has no running loop, so the environment's asyncio.run works;
    # result() re-raises its exception here.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cachegate-migrate") as pool:
        pool.submit(command.upgrade, cfg, "head").result()


async def migrate_async(url: str) -> None:
    """:func:`migrate` in a worker thread."""
    await asyncio.to_thread(migrate, url)


async def migrate_connection(conn: AsyncConnection, url: str) -> None:
    """``alembic upgrade head`` on an open connection: for an in-memory SQLite
    database, which another connection (:func:`migrate`'s own engine) would not see."""

    def upgrade(sync_conn: Connection) -> None:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "head")

    await conn.run_sync(upgrade)
