"""The document store: SQL through SQLAlchemy's async engine.

Every write that changes which entries are live appends to ``cache_changes`` in the
same transaction. On PostgreSQL those transactions first take one advisory lock, so
sequence numbers become visible in commit order and a poller reading ``seq > last``
never skips a change that commits late.

Driver and SQLAlchemy errors become :class:`CacheUnavailable` here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from cache.errors import CacheUnavailable, SpaceChanged
from cache.schema import OP_DELETE, OP_PUT, cache_changes, cache_entries, cache_meta
from cache.types import EntryInfo

_CHANGE_LOCK = 0x63616368  # "cach": serialises change-log writers on PostgreSQL
_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, ConnectionError)
E = cache_entries.c

META_COLUMNS = (
    E.id,
    E.tenant,
    E.model_alias,
    E.fingerprint,
    E.category,
    E.tier,
    E.exact_hash,
    E.created_at,
    E.expires_at,
    E.nbytes,
    E.hit_count,
    E.last_hit_at,
)
DOC_COLUMNS = (
    E.id,
    E.request_text,
    E.answer,
    E.backend,
    E.tier,
    E.prompt_tokens,
    E.completion_tokens,
    E.created_at,
    E.category,
    E.utility,
    E.model_alias,
    E.vector,
    E.example_ok,
)
ORDER_FOR_EVICTION = {
    "lru": (sa.func.coalesce(E.last_hit_at, E.created_at), E.id),
    "lfu": (E.hit_count, sa.func.coalesce(E.last_hit_at, E.created_at), E.id),
    "fifo": (E.created_at, E.id),
}


def is_memory(url: str) -> bool:
    """Whether ``url`` names an in-memory SQLite database (gone with its connection)."""
    return url.startswith("sqlite") and (":memory:" in url or "mode=memory" in url)


def make_engine(url: str) -> AsyncEngine:
    if is_memory(url):
        # One connection for all: each new one would open another, empty database.
        return create_async_engine(url, poolclass=StaticPool, hide_parameters=True)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 5}, hide_parameters=True)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the poller and lookups read while the writer commits.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"timeout": 3, "command_timeout": 10},
        hide_parameters=True,  # a failed insert must not write prompts into the logs
    )


@dataclass(frozen=True, slots=True)
class MetaValue:
    """A ``cache_meta`` value and when it was last written (epoch seconds)."""

    value: str
    updated_at: float


class DocumentStore:
    """Typed async operations on ``cache_entries`` / ``cache_changes``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        #: ``(key, value)`` of ``cache_meta`` that every insert checks inside its write
        #: transaction (:meth:`guard_meta`); ``None``: inserts check nothing.
        self._guard: tuple[str, str] | None = None

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise CacheUnavailable(f"cache store unavailable: {exc}") from exc

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                if self.is_postgres:
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHANGE_LOCK)))
                yield conn
        except _DB_ERRORS as exc:
            raise CacheUnavailable(f"cache store unavailable: {exc}") from exc

    def guard_meta(self, key: str, value: str) -> None:
        """From now on an insert is refused (:class:`SpaceChanged`) unless ``cache_meta``
        still holds ``value`` under ``key``. Checked inside the insert's own write
        transaction, which writes take one at a time (SQLite's write lock, PostgreSQL's
        advisory lock), so no insert lands after another writer replaced the value."""
        self._guard = (key, value)

    async def guard_holds(self) -> bool:
        """Whether ``cache_meta`` still holds the guarded value (``True`` without a guard)."""
        if self._guard is None:
            return True
        key, value = self._guard
        async with self._read() as conn:
            return await _meta_in(conn, key) == value

    async def _check_guard(self, conn: AsyncConnection) -> None:
        if self._guard is None:
            return
        key, value = self._guard
        if await _meta_in(conn, key) != value:
            raise SpaceChanged(f"the cache store's {key} record changed: this insert is refused")

    async def _log(self, conn: AsyncConnection, ids: Sequence[int], op: str, now: float) -> None:
        if ids:
            rows = [{"entry_id": i, "op": op, "at": now} for i in ids]
            await conn.execute(sa.insert(cache_changes), rows)

    # -- writes -------------------------------------------------------------------------
    async def insert(self, rows: list[dict[str, Any]], now: float) -> list[int]:
        """Inserts entries and their ``put`` changes; returns the new ids in row order."""
        rows = _without_nul(rows)
        async with self._write() as conn:
            await self._check_guard(conn)
            result = await conn.execute(
                sa.insert(cache_entries).returning(E.id, sort_by_parameter_order=True), rows
            )
            ids = [int(r[0]) for r in result]
            await self._log(conn, ids, OP_PUT, now)
            return ids

    async def bulk_insert(self, rows: list[dict[str, Any]], now: float) -> list[int]:
        """:meth:`insert` for loading many rows at once (benchmarks, imports): one
        transaction, one ``executemany`` per table. On SQLite ``INSERT .. RETURNING`` in
        parameter order runs one statement per row (~2k rows/s); here the ids are assigned
        as SQLite would (``max(id) + 1`` on), inside the write transaction, and the rows
        sent without RETURNING (~10x faster). PostgreSQL takes :meth:`insert` (its
        ids come from a sequence, which explicit ids would not advance)."""
        if self.is_postgres or not rows:
            return await self.insert(rows, now)
        rows = _without_nul(rows)
        async with self._write() as conn:
            await self._check_guard(conn)
            top = (await conn.execute(sa.select(sa.func.max(E.id)))).scalar()
            first = int(top or 0) + 1
            ids = list(range(first, first + len(rows)))
            await conn.execute(
                sa.insert(cache_entries), [{**r, "id": i} for r, i in zip(rows, ids, strict=True)]
            )
            await self._log(conn, ids, OP_PUT, now)
            return ids

    async def mark_deleted(
        self, where: sa.ColumnElement[bool], reason: str, now: float
    ) -> list[int]:
        """Marks matching live entries deleted (logging the change); returns their ids."""
        async with self._write() as conn:
            stmt = (
                sa.update(cache_entries)
                .where(where, E.deleted.is_(False))
                .values(deleted=True, delete_reason=reason)
                .returning(E.id)
            )
            ids = [int(r[0]) for r in await conn.execute(stmt)]
            await self._log(conn, ids, OP_DELETE, now)
            return ids

    async def evict(
        self,
        category: str,
        max_entries: int,
        eviction: str,
        now: float,
        protect: Sequence[int] = (),
    ) -> list[int]:
        """Deletes the category's entries beyond ``max_entries`` in ``eviction`` order.

        ``protect`` (the batch just written) is spared while older entries can make
        room: under LFU a newcomer has no hits yet and would otherwise always go first.
        """
        async with self._write() as conn:
            live = sa.and_(E.category == category, E.deleted.is_(False))
            count = (await conn.execute(sa.select(sa.func.count()).where(live))).scalar_one()
            excess = int(count) - max_entries
            if excess <= 0:
                return []
            order = ORDER_FOR_EVICTION[eviction]
            older = live if not protect else sa.and_(live, E.id.not_in(list(protect)))
            ids = [
                int(r[0])
                for r in await conn.execute(
                    sa.select(E.id).where(older).order_by(*order).limit(excess)
                )
            ]
            if len(ids) < excess:
                rest = sa.and_(live, E.id.not_in(ids)) if ids else live
                stmt = sa.select(E.id).where(rest).order_by(*order).limit(excess - len(ids))
                ids += [int(r[0]) for r in await conn.execute(stmt)]
            await conn.execute(
                sa.update(cache_entries)
                .where(E.id.in_(ids))
                .values(deleted=True, delete_reason="evicted")
            )
            await self._log(conn, ids, OP_DELETE, now)
            return ids

    async def add_hits(self, hits: Mapping[int, tuple[int, float]]) -> None:
        """Adds hit counts and sets last-hit times (batched by the writer)."""
        if not hits:
            return
        stmt = (
            sa.update(cache_entries)
            .where(E.id == sa.bindparam("eid"))
            .values(hit_count=E.hit_count + sa.bindparam("n"), last_hit_at=sa.bindparam("at"))
        )
        rows = [{"eid": k, "n": n, "at": at} for k, (n, at) in hits.items()]
        try:
            async with self.engine.begin() as conn:
                await conn.execute(stmt.execution_options(synchronize_session=False), rows)
        except _DB_ERRORS as exc:
            raise CacheUnavailable(f"cache store unavailable: {exc}") from exc

    async def update_fields(self, entry_id: int, values: dict[str, Any]) -> bool:
        async with self._read() as conn:
            stmt = sa.update(cache_entries).where(E.id == entry_id, E.deleted.is_(False))
            result = await conn.execute(stmt.values(**values))
            await conn.commit()
            return bool(result.rowcount)

    async def purge_deleted(self, batch: int = 5000) -> int:
        """Removes deleted entries' rows for good (text, answer, vector), ``batch`` rows per
        transaction so that writers wait little; returns how many.

        Deletes mark rows first (replicas learn of them from the change feed, which
        carries only ids); nothing reads a deleted row after that, and keeping it would
        keep a flushed or deleted tenant's prompts and answers on disk and grow the store
        with every expiry. The newest row is kept, emptied, while it is deleted: SQLite
        hands out max(id) + 1, and an id handed out again would be taken for the old
        entry by a snapshot or a replica that still holds it."""
        newest = sa.select(sa.func.max(E.id)).scalar_subquery()
        gone = sa.select(E.id).where(E.deleted.is_(True), E.id < newest).limit(batch)
        purged = 0
        while True:
            async with self._write() as conn:
                result = await conn.execute(sa.delete(cache_entries).where(E.id.in_(gone)))
            count = int(result.rowcount or 0)
            purged += count
            if count < batch:
                break
        scrub = (
            sa.update(cache_entries)
            .where(E.deleted.is_(True), E.id == newest, E.nbytes > 0)
            .values(request_text="", answer="", exact_hash="", vector=b"", nbytes=0)
        )
        async with self._write() as conn:
            await conn.execute(scrub)
        return purged

    async def prune_changes(self, before: float) -> int:
        """Deletes change rows older than ``before``, always keeping the newest row: SQLite
        would otherwise hand out used sequence numbers again after the table empties."""
        c = cache_changes.c
        newest = sa.select(sa.func.max(c.seq)).scalar_subquery()
        stmt = sa.delete(cache_changes).where(c.at < before, c.seq < newest)
        async with self._write() as conn:
            return int((await conn.execute(stmt)).rowcount or 0)

    # -- reads --------------------------------------------------------------------------
    async def max_seq(self) -> int:
        async with self._read() as conn:
            value = (await conn.execute(sa.select(sa.func.max(cache_changes.c.seq)))).scalar()
            return int(value or 0)

    async def changes_since(self, seq: int, limit: int = 5000) -> list[tuple[int, int, str]]:
        c = cache_changes.c
        stmt = sa.select(c.seq, c.entry_id, c.op).where(c.seq > seq).order_by(c.seq).limit(limit)
        async with self._read() as conn:
            return [(int(s), int(e), str(o)) for s, e, o in await conn.execute(stmt)]

    async def live_rows(
        self, ids: Sequence[int], now: float, *, vectors: bool
    ) -> list[sa.Row[Any]]:
        cols = (*META_COLUMNS, E.vector) if vectors else META_COLUMNS
        out: list[sa.Row[Any]] = []
        async with self._read() as conn:
            for start in range(0, len(ids), 1000):
                chunk = list(ids[start : start + 1000])
                stmt = sa.select(*cols).where(
                    E.id.in_(chunk), E.deleted.is_(False), E.expires_at > now
                )
                out.extend(await conn.execute(stmt))
        return out

    async def iter_live(
        self, now: float, *, vectors: bool, chunk: int = 5000
    ) -> AsyncIterator[list[sa.Row[Any]]]:
        """All live entries in id order, ``chunk`` rows at a time (keyset paging)."""
        cols = (*META_COLUMNS, E.vector) if vectors else META_COLUMNS
        last = -1
        while True:
            stmt = (
                sa.select(*cols)
                .where(E.id > last, E.deleted.is_(False), E.expires_at > now)
                .order_by(E.id)
                .limit(chunk)
            )
            async with self._read() as conn:
                rows = list(await conn.execute(stmt))
            if not rows:
                return
            yield rows
            last = int(rows[-1].id)

    async def live_ids(self, now: float, *, part: int = 50_000) -> npt.NDArray[np.int64]:
        """Sorted ids of all live entries. Reads one column, which the ``(deleted,
        expires_at)`` index covers, streamed: at 1M entries this is what a start-up from a
        snapshot reads instead of every row's metadata."""
        stmt = sa.select(E.id).where(E.deleted.is_(False), E.expires_at > now)
        parts: list[npt.NDArray[np.int64]] = []
        async with self._read() as conn:
            result = await conn.stream(stmt)
            async for chunk in result.scalars().partitions(part):
                parts.append(np.fromiter(chunk, np.int64, len(chunk)))
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        ids.sort()
        return ids

    async def documents(self, ids: Sequence[int]) -> dict[int, Any]:
        """Live documents by id (deleted ones are left out)."""
        if not ids:
            return {}
        stmt = sa.select(*DOC_COLUMNS).where(E.id.in_(list(ids)), E.deleted.is_(False))
        async with self._read() as conn:
            return {int(r.id): r for r in await conn.execute(stmt)}

    async def list_entries(
        self, where: sa.ColumnElement[bool], offset: int, limit: int
    ) -> list[EntryInfo]:
        stmt = (
            sa.select(cache_entries)
            .where(where, E.deleted.is_(False))
            .order_by(E.id.desc())
            .offset(offset)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_info(r) for r in await conn.execute(stmt)]

    # -- facts about the store ----------------------------------------------------------

    async def claim_meta(self, key: str, value: str, now: float) -> str:
        """Stores ``value`` under ``key`` unless a value is there; returns the stored one
        (``value``, or what another replica wrote first: the write lock orders them)."""
        async with self._write() as conn:
            stored = await _meta_in(conn, key)
            if stored is not None:
                return stored
            await conn.execute(sa.insert(cache_meta).values(key=key, value=value, updated_at=now))
            return value

    async def set_meta(self, key: str, value: str, now: float) -> None:
        async with self._write() as conn:
            await self._put_meta(conn, key, value, now)

    async def meta_value(self, key: str) -> MetaValue | None:
        M = cache_meta.c
        async with self._read() as conn:
            stmt = sa.select(M.value, M.updated_at).where(M.key == key)
            row = (await conn.execute(stmt)).one_or_none()
            return None if row is None else MetaValue(str(row.value), float(row.updated_at))

    # -- re-embedding (cache.vector_space) -----------------------------------------------
    async def count_from(self, after_id: int) -> int:
        """Entries not deleted with an id above ``after_id`` (expired ones included)."""
        stmt = sa.select(sa.func.count()).where(E.id > after_id, E.deleted.is_(False))
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def texts_after(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        """``(id, request_text)`` of the next ``limit`` entries not deleted, in id order."""
        stmt = (
            sa.select(E.id, E.request_text)
            .where(E.id > after_id, E.deleted.is_(False))
            .order_by(E.id)
            .limit(limit)
        )
        async with self._read() as conn:
            return [(int(r.id), str(r.request_text)) for r in await conn.execute(stmt)]

    async def replace_vectors(
        self,
        vectors: Sequence[tuple[int, npt.NDArray[np.float32]]],
        key: str,
        value: str,
        now: float,
    ) -> None:
        """Stores new vectors for existing entries and sets ``key`` to ``value``, in one
        transaction, so that the progress a re-embedding records is never ahead of what
        it wrote. ``nbytes`` follows the vectors' width."""
        ids = [eid for eid, _ in vectors]
        rows: list[dict[str, Any]] = []
        for eid, v in vectors:
            unit = np.asarray(v, dtype=np.float32).reshape(-1)
            unit = unit / np.float32(np.linalg.norm(unit) or 1.0)  # as inserts store them
            rows.append({"eid": eid, "vec": unit.tobytes(), "width": 4 * unit.size})
        stmt = (
            sa.update(cache_entries)
            .where(E.id == sa.bindparam("eid"))
            .values(
                vector=sa.bindparam("vec"),
                nbytes=E.nbytes - sa.func.length(E.vector) + sa.bindparam("width"),
            )
        )
        async with self._write() as conn:
            if rows:
                await conn.execute(stmt, rows)
            # Logged as changes so that a replica still on the old embedder reads the new
            # record at its next poll and stops (replicas skip puts of ids they hold).
            await self._log(conn, ids, OP_PUT, now)
            await self._put_meta(conn, key, value, now)

    async def replace_all(self, key: str, value: str, reason: str, now: float) -> list[int]:
        """Sets ``key`` to ``value`` and marks every live entry deleted, in one
        transaction (a crash between the two would leave entries of the old value
        under the new one); returns the deleted ids."""
        async with self._write() as conn:
            await self._put_meta(conn, key, value, now)
            stmt = (
                sa.update(cache_entries)
                .where(E.deleted.is_(False))
                .values(deleted=True, delete_reason=reason)
                .returning(E.id)
            )
            ids = [int(r[0]) for r in await conn.execute(stmt)]
            await self._log(conn, ids, OP_DELETE, now)
            return ids

    async def _put_meta(self, conn: AsyncConnection, key: str, value: str, now: float) -> None:
        M = cache_meta.c
        stmt = sa.update(cache_meta).where(M.key == key).values(value=value, updated_at=now)
        if (await conn.execute(stmt)).rowcount == 0:
            await conn.execute(sa.insert(cache_meta).values(key=key, value=value, updated_at=now))

    async def count(self, where: sa.ColumnElement[bool]) -> int:
        stmt = sa.select(sa.func.count()).where(where, E.deleted.is_(False))
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())


async def _meta_in(conn: AsyncConnection, key: str) -> str | None:
    stmt = sa.select(cache_meta.c.value).where(cache_meta.c.key == key)
    value = (await conn.execute(stmt)).scalar_one_or_none()
    return None if value is None else str(value)


def _info(r: sa.Row[Any]) -> EntryInfo:
    return EntryInfo(
        entry_id=int(r.id),
        tenant=r.tenant,
        model_alias=r.model_alias,
        fingerprint=r.fingerprint,
        category=r.category,
        request_text=r.request_text,
        backend=r.backend,
        tier=r.tier,
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        created_at=r.created_at,
        expires_at=r.expires_at,
        last_hit_at=r.last_hit_at,
        hit_count=r.hit_count,
        feedback_score=r.feedback_score,
        utility=r.utility,
        example_ok=bool(r.example_ok),
    )


def _without_nul(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose request text has each NUL replaced by U+FFFD.

    PostgreSQL's text type cannot hold NUL: one prompt with a "\\u0000" failed its
    whole write batch, every other entry in it included, and read as a store outage.
    The text is kept for display, re-embedding and the equivalence check, where one
    replaced control character changes nothing; the exact tier's key is computed
    from the original text. Answers are stored as JSON, which escapes NUL.
    """
    if not any("\x00" in r["request_text"] for r in rows):
        return rows
    return [{**r, "request_text": r["request_text"].replace("\x00", "\ufffd")} for r in rows]


def answer_text(answer_json: str) -> str:
    """The assistant message content of a stored OpenAI chat completion ('' if none)."""
    try:
        doc = json.loads(answer_json)
        content = doc["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""
