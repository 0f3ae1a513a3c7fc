"""Text PostgreSQL cannot store: NUL characters, ids longer than their column.

JSON carries NUL as "\\u0000" and a prompt may hold one. Before, one such prompt
failed its whole write-behind batch (every other entry in it lost), read as a store
outage, and dropped its batch of request-log rows; an admin value with one came back
as a 503 quoting the SQL. Now stored text has it replaced (U+FFFD) and admin values
with one are refused with a clear 422. A backend's over-long response id is left out
of the request log instead of failing the batch.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from backends.embedding import Embedder
from proxy.services import Services
from tests.hardening.conftest import Cfg, admin, chat, start
from tests.pg import PgServer, pg_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres
WITH_NUL = "what is the \u0000 deepest lake on earth"
PLAIN = ["how tall is the eiffel tower", "who painted the mona lisa", "how far away is the moon"]


def _log_prompts(cfg: Cfg) -> None:
    cfg["privacy"] = {"request_log": True, "store_prompts": True}


def _metric(stack: Any, name: str) -> float:
    text = httpx.get(stack.url + "/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_nul_in_prompts_and_admin_values(embedder: Embedder, pg_server: PgServer) -> None:  # noqa: F811
    url = asyncio.run(pg_server.create_database())
    stack = start(embedder, url, _log_prompts)
    try:
        # Sent together so the write-behind queue takes them as one batch.
        with ThreadPoolExecutor(4) as pool:
            first = list(pool.map(lambda q: chat(stack, q), [WITH_NUL, *PLAIN]))
        assert [r.status_code for r in first] == [200] * 4

        async def flush(s: Services) -> None:
            assert s.cache is not None and s.request_log is not None
            await s.cache.flush()
            await s.request_log.flush()

        stack.call(flush)
        for q in [WITH_NUL, *PLAIN]:  # all stored, the NUL one included (exact key kept)
            assert chat(stack, q).headers["x-cachegate-cache"] == "hit", q
        drops = 'cachegate_cache_write_drops_total{reason="store_error"}'
        assert _metric(stack, drops) == 0.0
        assert _metric(stack, "cachegate_cache_store_up") == 1.0

        with admin(stack) as client:
            for body in ({"tenant": "a\u0000b", "name": "k"}, {"tenant": "a", "name": "k\u0000"}):
                r = client.post("/keys", json=body)
                assert r.status_code == 422, r.text
                message = r.json()["error"]["message"]
                assert "NUL" in message and "SQL" not in message
            assert client.post("/keys", json={"tenant": "a", "name": "fine"}).status_code == 201
        long_id = {
            "id": "chatcmpl-" + "x" * 300, "object": "chat.completion", "created": 1,
            "model": "m", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "fine"}, "finish_reason": "stop"}],
        }  # fmt: skip
        for tier in ("small", "large"):
            stack.set_faults(tier, raw_answer=json.dumps(long_id))
        assert chat(stack, "an answer with a very long id").json()["id"] == long_id["id"]
        stack.call(flush)
    finally:
        stack.stop()
    texts, prompts = asyncio.run(_stored(url))
    assert WITH_NUL.replace("\u0000", "\ufffd") in texts and set(PLAIN) <= texts
    assert len(prompts) == 9  # every request logged, none dropped with the NUL one
    assert WITH_NUL.replace("\u0000", "\ufffd") in prompts


async def _stored(url: str) -> tuple[set[str], list[str]]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        texts = {r[0] for r in await conn.fetch("SELECT request_text FROM cache_entries")}
        prompts = [r[0] for r in await conn.fetch("SELECT prompt FROM request_log")]
        return texts, prompts
    finally:
        await conn.close()
