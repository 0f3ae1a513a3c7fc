"""PostgreSQL stopped and restarted under traffic (a private server: stopping the
session's shared one would break other tests).

Every request is answered while it is down (the cache fails open), dropped writes
are counted, writes resume when it is back, and the table holds no duplicate or
corrupt entries afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from backends.embedding import Embedder
from tests.hardening.conftest import chat, start
from tests.pg import PgServer
from tests.stack import Stack, wait_until

pytestmark = pytest.mark.postgres
QUESTIONS = [
    "How do volcanoes form?", "What causes ocean tides?", "How does photosynthesis work?",
    "What is inside a black hole?", "Why do glaciers move?", "What triggers an earthquake?",
    "Why do rainbows appear after rain?", "How do fridge magnets stick?",
    "How do vaccines train the immune system?", "How does a lithium battery store energy?",
    "Where do comets come from?", "Why are coral reefs bleaching?",
    "Who invented the printing press?", "What is the tallest tree species?",
    "How do bees make honey?", "Why is the Dead Sea so salty?",
    "How does a jet engine produce thrust?", "What language is spoken in Brazil?",
]  # fmt: skip


def question(i: int) -> str:
    return QUESTIONS[i]


@pytest.fixture
def private_pg() -> Iterator[PgServer]:
    server = PgServer().init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def _drops(stack: Stack) -> float:
    text = httpx.get(stack.url + "/metrics", timeout=10).text
    found = re.search(r'cachegate_cache_write_drops_total\{reason="store_error"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_postgres_down_and_back(embedder: Embedder, private_pg: PgServer) -> None:
    url = asyncio.run(private_pg.create_database())
    stack = start(embedder, url)
    try:
        for i in range(6):
            assert chat(stack, question(i)).status_code == 200
        stack.flush_writes()
        assert chat(stack, question(0)).headers["x-cachegate-cache"] == "hit"

        private_pg.stop()
        for i in range(6, 12):  # new questions: their writes cannot land
            r = chat(stack, question(i))
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        for i in range(3):  # earlier ones: answered from memory or by the backend
            assert chat(stack, question(i)).status_code == 200
        stack.flush_writes()
        assert _drops(stack) >= 1

        private_pg.start()
        for i in range(12, 18):
            assert chat(stack, question(i)).status_code == 200

        def resumed() -> bool:
            stack.flush_writes()
            return chat(stack, question(17)).headers["x-cachegate-cache"] == "hit"

        assert wait_until(resumed, timeout=20)
        for i in range(12, 17):
            assert chat(stack, question(i)).headers["x-cachegate-cache"] in ("hit", "miss")
        stack.flush_writes()
    finally:
        stack.stop()
    rows = asyncio.run(_live_rows(url))
    keys = [(r["tenant"], r["fingerprint"], r["exact_hash"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate live entries"
    for r in rows:
        answer = json.loads(r["answer"])
        assert answer["choices"][0]["message"]["content"]
        assert len(r["vector"]) == 384 * 4
    stored = {r["request_text"] for r in rows}
    assert {question(i) for i in range(6)} <= stored  # before the outage
    assert question(17) in stored  # after it


async def _live_rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return list(await conn.fetch("SELECT * FROM cache_entries WHERE NOT deleted"))
    finally:
        await conn.close()
