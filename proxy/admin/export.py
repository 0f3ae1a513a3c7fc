"""A tenant's export, streamed: one JSON document written page by page.

Everything cachegate stores about a tenant: its cache entries with their answers
(never the vectors), its request log rows, its keys' metadata and its limits.
Entries and rows are read in keyset pages of :data:`PAGE` (``id > last``), each
page in its own short read, so memory stays at one page whatever the tenant's
size and no transaction is held while the client reads. The small parts come
first; ``"complete": true`` is the document's last field, so a client can tell an
export cut short (a store failing half-way) from a whole one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.request_log import RequestLog

log = logging.getLogger("cachegate.admin.export")
PAGE = 500

# The cache package's table (cache/schema.py), read here only: an export must hold the
# answers, which the cache's admin listing (EntryInfo) leaves out.
COLUMNS = (
    "id", "tenant", "model_alias", "fingerprint", "category", "request_text", "answer",
    "backend", "tier", "prompt_tokens", "completion_tokens", "created_at", "expires_at",
    "last_hit_at", "hit_count", "feedback_score", "utility", "deleted",
)  # fmt: skip
cache_entries = sa.table("cache_entries", *(sa.column(name) for name in COLUMNS))
E = cache_entries.c


async def entry_pages(engine: AsyncEngine, tenant: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The tenant's live cache entries, oldest first, a page at a time; ``answer`` is
    the stored response document."""
    columns = [c for c in cache_entries.c if c.name != "deleted"]
    last = 0
    while True:
        stmt = (
            sa.select(*columns)
            .where(E.tenant == tenant, E.id > last, E.deleted.is_(False))
            .order_by(E.id)
            .limit(PAGE)
        )
        async with engine.connect() as conn:
            page = [dict(r._mapping) for r in await conn.execute(stmt)]
        if not page:
            return
        last = int(page[-1]["id"])
        for row in page:
            row["entry_id"] = row.pop("id")
            row["answer"] = _document(row["answer"])
        yield page


async def log_pages(request_log: RequestLog, tenant: str) -> AsyncIterator[list[dict[str, Any]]]:
    await request_log.flush()  # rows of the last requests may still be queued
    last = 0
    while page := await request_log.rows_after(tenant, last, PAGE):
        last = int(page[-1]["id"])
        yield page


def _document(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text  # stored by an older version as plain text


async def stream_export(
    head: Mapping[str, Any],
    entries: AsyncIterator[list[dict[str, Any]]] | None,
    rows: AsyncIterator[list[dict[str, Any]]],
) -> AsyncIterator[bytes]:
    """``head``'s fields, then ``cache_entries`` and ``request_log`` as JSON arrays
    written page by page, then ``"complete": true``."""
    yield json.dumps(dict(head))[:-1].encode()
    for name, pages in (("cache_entries", entries), ("request_log", rows)):
        yield f', "{name}": ['.encode()
        first = True
        if pages is not None:
            async for page in pages:
                for item in page:
                    yield (b"" if first else b", ") + json.dumps(item).encode()
                    first = False
        yield b"]"
    yield b', "complete": true}'
