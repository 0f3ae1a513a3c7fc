"""Example utilities shared by every replica: Beta states in SQL (migration 0005).

Each outcome is one atomic ``INSERT … ON CONFLICT DO UPDATE`` that adds to the
row in place (``alpha = 1 + decay·(alpha − 1) + reward``), so two replicas
crediting the same example at once both count — no read-modify-write race.

Reads on the request path never touch SQL: each replica keeps a copy of the
states, updated by its own writes and by :meth:`SharedUtilities.refresh`, which
re-reads the rows changed since its last pass (the ``run`` loop calls it every
``refresh_s``). A replica therefore sees another's update within about
``refresh_s``. ``updated_at`` is the writer's wall clock; the refresh looks
back ``lookback_s`` further so clock skew between replicas up to that is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from router.errors import RouterConfigError, UtilityStoreUnavailable
from router.types import check_unit
from router.utility import PRIOR, Utility

log = logging.getLogger("cachegate.router.utility")

metadata = sa.MetaData()

example_utility = sa.Table(
    "router_example_utility",
    metadata,
    sa.Column("entry_id", sa.String(64), primary_key=True),
    sa.Column("alpha", sa.Float(), nullable=False),
    sa.Column("beta", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Index("ix_router_example_utility_updated_at", "updated_at"),
)
U = example_utility.c
DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, ConnectionError)


class SharedUtilities:
    """Utilities by entry id backed by SQL; ``update`` is atomic across replicas."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        decay: float = 1.0,
        refresh_s: float = 5.0,
        lookback_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.decay = check_unit(decay, "decay")
        for name, value in (("refresh_s", refresh_s), ("lookback_s", lookback_s)):
            if not isinstance(value, int | float) or not 0.0 < value < math.inf:
                raise RouterConfigError(f"{name} must be a number > 0, got {value!r}")
        self.refresh_s = float(refresh_s)
        self.lookback_s = float(lookback_s)
        self.clock = clock
        self._states: dict[str, Utility] = {}
        self._since: float | None = None  # None: the first refresh reads every row
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def create_table(self) -> None:
        """For databases Alembic does not migrate (an in-memory SQLite)."""
        async with self._begin() as conn:
            await conn.run_sync(metadata.create_all)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise UtilityStoreUnavailable(f"example utility store unavailable: {exc}") from exc

    # -- writes ---------------------------------------------------------------------------
    async def update(self, entry_id: str, reward: float) -> Utility:
        """Credits one outcome (``reward`` in [0, 1]) to ``entry_id``; returns its new state."""
        return (await self.update_many([entry_id], reward))[entry_id]

    async def update_many(self, entry_ids: Iterable[str], reward: float) -> dict[str, Utility]:
        """Credits the same outcome to several examples in one transaction."""
        r = check_unit(reward, "reward")
        ids = sorted({str(e) for e in entry_ids})  # one lock order: no deadlock between replicas
        now = self.clock()
        d = self.decay
        out: dict[str, Utility] = {}
        async with self._begin() as conn:
            for eid in ids:
                insert = self._insert(example_utility).values(
                    entry_id=eid, alpha=PRIOR + r, beta=PRIOR + (1.0 - r), updated_at=now
                )
                # Arithmetic on the stored row inside the statement: atomic per row.
                stmt = insert.on_conflict_do_update(
                    index_elements=[U.entry_id],
                    set_={
                        "alpha": PRIOR + d * (U.alpha - PRIOR) + r,
                        "beta": PRIOR + d * (U.beta - PRIOR) + (1.0 - r),
                        "updated_at": now,
                    },
                ).returning(U.alpha, U.beta)
                row = (await conn.execute(stmt)).one()
                out[eid] = Utility(float(row.alpha), float(row.beta))
        self._states.update(out)
        return out

    async def forget(self, entry_ids: Iterable[str]) -> None:
        """Drops the states of entries that left the cache."""
        ids = [str(e) for e in entry_ids]
        if not ids:
            return
        async with self._begin() as conn:
            await conn.execute(sa.delete(example_utility).where(U.entry_id.in_(ids)))
        for eid in ids:
            self._states.pop(eid, None)

    # -- reads ----------------------------------------------------------------------------
    def utility(self, entry_id: str, default: float = 0.5) -> float:
        """This replica's current copy (no I/O); ``default`` for entries never credited."""
        state = self._states.get(str(entry_id))
        return default if state is None else state.mean

    def state(self, entry_id: str) -> Utility:
        return self._states.get(str(entry_id), Utility())

    async def read(self, entry_ids: Iterable[str]) -> dict[str, Utility]:
        """The stored states of ``entry_ids`` (fresh from SQL), also kept locally."""
        ids = sorted({str(e) for e in entry_ids})
        if not ids:
            return {}
        stmt = sa.select(U.entry_id, U.alpha, U.beta).where(U.entry_id.in_(ids))
        async with self._begin() as conn:
            rows = (await conn.execute(stmt)).all()
        got = {str(r.entry_id): Utility(float(r.alpha), float(r.beta)) for r in rows}
        self._states.update(got)
        return got

    async def refresh(self) -> int:
        """Reads the rows changed since the last refresh (all rows the first time);
        returns how many were read."""
        started = self.clock()
        stmt = sa.select(U.entry_id, U.alpha, U.beta)
        if self._since is not None:
            stmt = stmt.where(U.updated_at >= self._since - self.lookback_s)
        async with self._begin() as conn:
            rows = (await conn.execute(stmt)).all()
        for r in rows:
            self._states[str(r.entry_id)] = Utility(float(r.alpha), float(r.beta))
        self._since = started
        return len(rows)

    async def run(self, stopping: asyncio.Event) -> None:
        """Refreshes every ``refresh_s`` until ``stopping`` is set (returns at its next
        wait, never cancelled mid-query). A store that is down is retried next round."""
        while not stopping.is_set():
            try:
                await self.refresh()
            except UtilityStoreUnavailable as exc:
                log.warning("example utilities not refreshed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.refresh_s)
