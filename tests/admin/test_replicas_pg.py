"""Two cachegate replicas on one PostgreSQL: an admin change on one is live on the
other within a second (policy, router threshold, new key, revoked key)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from backends.embedding import Embedder
from tests.admin.conftest import CLIENT_KEY, admin, ask, oai, start
from tests.admin.test_categories import LEGAL, PROBE
from tests.pg import PgServer
from tests.stack import wait_until

pytestmark = pytest.mark.postgres


def within(seconds: float, probe: Callable[[], bool]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if probe():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not seen within {seconds}s")


def _category(client: httpx.Client, text: str) -> str:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": text}]},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert r.status_code == 200, r.text
    return r.headers["x-cachegate-category"]


def test_changes_reach_the_other_replica_within_a_second(
    embedder: Embedder, pg_server: PgServer
) -> None:
    url = asyncio.run(pg_server.create_database())
    one = start(embedder, url)
    two = start(embedder, url)
    try:
        with admin(one) as a1, admin(two) as a2, httpx.Client(base_url=two.url) as c2:
            a1.patch("/policies/code", json={"ttl_seconds": 120})
            within(1.0, lambda: a2.get("/policies/code").json()["effective"]["ttl_seconds"] == 120)

            a2.patch("/router", json={"threshold": 0.42})
            within(1.0, lambda: a1.get("/router").json()["threshold"] == 0.42)

            made = a1.post("/keys", json={"tenant": "acme"}).json()
            auth = {"Authorization": f"Bearer {made['key']}"}
            within(1.0, lambda: c2.get("/v1/models", headers=auth).status_code == 200)
            assert [k["id"] for k in a2.get("/keys").json()["data"]] == [made["id"]]

            assert a1.delete(f"/keys/{made['id']}").status_code == 200
            within(1.0, lambda: c2.get("/v1/models", headers=auth).status_code == 401)

            a2.delete("/policies/code")
            within(1.0, lambda: a1.get("/policies/code").json()["source"] == "configured")

            # A category change is replayed (one refit, seconds of CPU) on the other replica.
            r = a1.post("/categories", json={"name": "legal", "examples": LEGAL})
            assert r.status_code == 201, r.text
            within(60.0, lambda: a2.get("/categories/legal").status_code == 200)
            assert _category(c2, PROBE) == "legal"
            actions = [e["action"] for e in a2.get("/audit").json()["data"]]
            assert actions == ["create", "delete", "revoke", "create", "patch", "patch"]
    finally:
        one.stop()
        two.stop()

    # A restarted replica starts from what the store holds.
    three = start(embedder, url)
    try:
        with admin(three) as a3:
            assert a3.get("/router").json()["threshold"] == 0.42
            assert a3.get("/keys").json()["data"][0]["revoked"] is True
            assert a3.get("/categories/legal").json()["example_count"] == len(LEGAL)
    finally:
        three.stop()


def test_a_flush_covers_answers_in_flight_on_the_other_replica(
    embedder: Embedder, pg_server: PgServer
) -> None:
    url = asyncio.run(pg_server.create_database())
    one = start(embedder, url)
    two = start(embedder, url)
    question = "Which river flows through Vienna?"
    client = oai(two)
    try:
        for tier in ("small", "large"):
            two.set_faults(tier, hold=True)
        answers: list[Any] = []
        asking = threading.Thread(target=lambda: answers.append(ask(client, question)))
        asking.start()
        assert wait_until(lambda: len(two.received("small")) + len(two.received("large")) == 1)
        with admin(one) as a1:
            r = a1.post("/cache/flush", json={"tenant": "a"})
            assert r.status_code == 200, r.text
        two.apply_admin_feed()
        for tier in ("small", "large"):
            two.set_faults(tier, hold=False)
        asking.join(30)
        assert answers[0].headers["x-cachegate-cache"] == "miss"
        two.flush_writes()
        # The answer arrived on replica two after replica one's flush: not stored.
        assert ask(client, question).headers["x-cachegate-cache"] == "miss"
        two.flush_writes()
        assert ask(client, question).headers["x-cachegate-cache"] == "hit"
        # The flush is not written to the audit trail twice.
        with admin(two) as a2:
            actions = [
                e["action"] for e in a2.get("/audit", params={"kind": "cache"}).json()["data"]
            ]
        assert actions == ["flush"]
    finally:
        client.close()
        one.stop()
        two.stop()
