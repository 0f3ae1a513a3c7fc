"""A flush covers answers that were on their way when it arrived: a request in flight
(the backend still answering) does not store its answer after a flush of its tenant."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from backends.embedding import Embedder
from tests.hardening.conftest import KEY_A, KEY_B, admin, chat, start
from tests.stack import Stack, wait_until

QUESTION = "Which river flows through Vienna?"


def _ask_while_held(stack: Stack, key: str, results: list[httpx.Response]) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(chat(stack, QUESTION, key=key)))
    thread.start()
    return thread


def test_answer_in_flight_during_a_flush_is_not_stored(embedder: Embedder, tmp_path: Path) -> None:
    stack = start(embedder, tmp_path / "f.db")
    try:
        for tier in ("small", "large"):
            stack.set_faults(tier, hold=True)
        results: list[httpx.Response] = []
        threads = [_ask_while_held(stack, key, results) for key in (KEY_A, KEY_B)]
        assert wait_until(
            lambda: len(stack.received("small")) + len(stack.received("large")) == 2
        ), "the backends did not receive both requests"
        with admin(stack) as a:
            r = a.post("/cache/flush", json={"tenant": "a"})
            assert r.status_code == 200, r.text
        for tier in ("small", "large"):
            stack.set_faults(tier, hold=False)
        for t in threads:
            t.join(30)
        assert [r.status_code for r in results] == [200, 200]
        assert {r.headers["x-cachegate-cache"] for r in results} == {"miss"}
        stack.flush_writes()
        # Tenant a's answer arrived after its flush: not stored. Tenant b's flush did not
        # cover it: stored.
        assert chat(stack, QUESTION, key=KEY_A).headers["x-cachegate-cache"] == "miss"
        assert chat(stack, QUESTION, key=KEY_B).headers["x-cachegate-cache"] == "hit"
        # Asked after the flush: stored as usual.
        stack.flush_writes()
        assert chat(stack, QUESTION, key=KEY_A).headers["x-cachegate-cache"] == "hit"
    finally:
        stack.stop()


def test_a_replica_does_not_apply_its_own_flush_twice(embedder: Embedder, tmp_path: Path) -> None:
    # Other replicas apply a flush from the change feed; the one that made it must not,
    # or it deletes what was stored since (its poller runs up to 0.25 s later).
    stack = start(embedder, tmp_path / "own.db")
    try:
        with admin(stack) as a:
            assert a.post("/cache/flush", json={"tenant": "a"}).status_code == 200
            assert a.delete("/tenants/b").status_code == 200
        assert chat(stack, QUESTION).headers["x-cachegate-cache"] == "miss"
        stack.flush_writes()
        stack.apply_admin_feed()
        stack.flush_writes()
        assert chat(stack, QUESTION).headers["x-cachegate-cache"] == "hit"
    finally:
        stack.stop()
