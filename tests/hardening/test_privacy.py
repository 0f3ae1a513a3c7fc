"""Privacy per tenant: cache opt-out, the request log, export/delete, and no secrets in logs."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from backends.embedding import Embedder
from proxy.admin import export as export_module
from proxy.cli import main as cli
from proxy.services import Services
from router import read_records
from tests.hardening.conftest import ADMIN_KEY, KEY_A, KEY_B, Cfg, admin, chat, start
from tests.stack import Stack, wait_until


def _privacy(cfg: Cfg) -> None:
    cfg["privacy"] = {
        "request_log": True,
        "tenants": {"a": {"store_prompts": True}, "b": {"cache": False}},
    }


async def _flush(s: Services) -> None:
    assert s.request_log is not None
    await s.request_log.flush()
    if s.cache is not None:
        await s.cache.flush()


def _log_rows(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    async def rows(s: Services) -> list[dict[str, Any]]:
        assert s.request_log is not None
        await s.request_log.flush()
        return await s.request_log.rows(tenant)

    return stack.call(rows)


@pytest.fixture
def stack(embedder: Embedder, tmp_path: Path) -> Any:
    s = start(embedder, tmp_path / "p.db", _privacy)
    try:
        yield s
    finally:
        s.stop()


def test_cache_opt_out_and_request_log(stack: Stack, tmp_path: Path) -> None:
    q = "What is the tallest mountain in Africa?"
    for key in (KEY_A, KEY_B):
        assert chat(stack, q, key=key).headers["x-cachegate-cache"] == "miss" or key == KEY_B
        stack.call(_flush)
    assert chat(stack, q, key=KEY_A).headers["x-cachegate-cache"] == "hit"
    again_b = chat(stack, q, key=KEY_B)
    assert again_b.headers["x-cachegate-cache"] == "bypass"  # b never reads or writes the cache
    stack.call(_flush)
    with admin(stack) as adm:
        assert adm.get("/cache/entries", params={"tenant": "b"}).json()["data"] == []

    rows_a, rows_b = _log_rows(stack, "a"), _log_rows(stack, "b")
    assert [r["cache"] for r in rows_a] == ["miss", "hit"]
    assert rows_a[0]["prompt"] == q and rows_a[0]["tier"] == "small"
    assert rows_a[0]["completion_tokens"] > 0 and rows_a[0]["response_id"]
    assert [r["prompt"] for r in rows_b] == [None, None]  # prompts not stored for b

    rid = rows_a[0]["response_id"]

    async def rate(s: Services) -> bool:
        assert s.request_log is not None
        return await s.request_log.rate("a", rid, 1.0)

    assert stack.call(rate)
    config = tmp_path / "cli.yaml"
    settings = stack.settings.model_dump(mode="json")
    config.write_text(
        yaml.safe_dump({"storage": settings["storage"], "backends": settings["backends"]})
    )
    out = tmp_path / "train.jsonl"
    assert cli(["export-request-log", "--config", str(config), "--out", str(out)]) == 0
    records = list(read_records(out))
    assert len(records) == 1 and records[0].prompt == q
    assert records[0].small_ok == 1.0 and records[0].large_ok is None

    async def sweep(s: Services) -> int:
        assert s.request_log is not None
        s.request_log.retention_s = 0.0  # everything is past retention now
        return await s.request_log.sweep()

    assert stack.call(sweep) == 4
    assert _log_rows(stack, "a") == []


def test_export_and_delete_tenant(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "PAGE", 1)  # every entry and row on a page of its own
    with admin(stack) as adm:
        made = adm.post("/keys", json={"tenant": "a", "name": "app"}).json()
        key = made["key"]
        answers = {}
        for text in ("How do I sort a dict by value in Python?", "What is a monad?"):
            reply = chat(stack, text, key=key)
            assert reply.status_code == 200
            answers[text] = reply.json()["choices"][0]["message"]["content"]
        stack.call(_flush)
        response = adm.get("/tenants/a/export")
        assert response.headers["transfer-encoding"] == "chunked"  # streamed, not built whole
        export = response.json()
        assert export["complete"] is True
        entries = export["cache_entries"]
        assert {e["request_text"]: e["answer"]["choices"][0]["message"]["content"]
                for e in entries} == answers  # fmt: skip
        assert {e["tenant"] for e in entries} == {"a"} and "vector" not in entries[0]
        assert [k["id"] for k in export["keys"]] == [made["id"]]
        assert key not in json.dumps(export)  # only metadata, never the secret
        assert len(export["request_log"]) == 2 and export["configured_keys"] == 1
        assert [r["id"] for r in export["request_log"]] == sorted(
            r["id"] for r in export["request_log"]
        )
        assert export["configured_key_ids"] == ["cfg:H_KEY_A"]
        assert set(export["limits"]["keys"]) == {made["id"], "cfg:H_KEY_A"}
        assert export["privacy"] == {"cache": True, "request_log": True, "store_prompts": True}
        assert adm.get("/tenants/b/export").json()["cache_entries"] == []

        deleted = adm.delete("/tenants/a").json()
        assert deleted["cache_entries"] == 2 and deleted["keys_revoked"] == 1
        assert deleted["request_log_rows"] == 2 and deleted["configured_keys"] == 1
        assert deleted["configured_keys_revoked"] == 1
        assert chat(stack, "still there?", key=key).status_code == 401
        assert chat(stack, "the file's key too?", key=KEY_A).status_code == 401
        assert chat(stack, "tenant b is untouched", key=KEY_B).status_code == 200
        after = adm.get("/tenants/a/export").json()
        assert after["cache_entries"] == [] and after["request_log"] == []
        assert any(r["kind"] == "tenant" for r in adm.get("/audit").json()["data"])

    async def stored_texts(s: Services) -> list[str]:
        assert s.cache is not None
        async with s.cache.store.engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT request_text, answer FROM cache_entries"))
            return [f"{text} {answer}" for text, answer in rows]

    # Gone from disk too, not only flagged: no question or answer of tenant a is stored.
    on_disk = " ".join(stack.call(stored_texts))
    assert not any(t in on_disk or a in on_disk for t, a in answers.items())


def test_logs_never_show_keys_or_prompts(
    embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="cachegate")
    prompt = "zebra-quartz-7781 what is my secret plan for tomorrow"
    stack = start(embedder, tmp_path / "logs.db", _privacy)
    try:
        assert chat(stack, prompt, key=KEY_A).status_code == 200
        assert chat(stack, prompt, key=KEY_A, stream=True).status_code == 200
        stack.set_faults("small", error_rate=1.0)
        stack.set_faults("large", error_rate=1.0)
        failing = "zebra-quartz-7781 name the moons of Jupiter in order"
        assert chat(stack, failing, key=KEY_A).status_code >= 500
        assert chat(stack, prompt, key="sk-wrong-key-999").status_code == 401
        with admin(stack) as adm:
            assert adm.get("/limits").status_code == 200
        stack.call(_flush)
    finally:
        stack.stop()
    text = caplog.text
    assert "cachegate ready" in text and "backend answered HTTP 500" in text  # captured
    for secret in (KEY_A, ADMIN_KEY, "sk-wrong-key-999", "zebra-quartz-7781"):
        assert secret not in text


def _ask_held(stack: Stack, key: str, out: list[Any]) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.append(chat(stack, "Held question?", key=key)))
    thread.start()
    return thread


def test_requests_in_flight_when_a_tenant_is_deleted_leave_no_log_row(
    embedder: Embedder, tmp_path: Path
) -> None:
    # A request admitted before the deletion finishes after its rows were deleted: its
    # row must not be written back, on this replica or on one that learns of it from
    # the change feed.
    db = tmp_path / "two.db"
    here, there = start(embedder, db, _privacy), start(embedder, db, _privacy)
    try:
        for s in (here, there):
            s.set_faults("small", hold=True)
        answers: list[Any] = []
        threads = [_ask_held(s, key, answers) for s in (here, there) for key in (KEY_A, KEY_B)]
        assert wait_until(lambda: len(here.received("small")) + len(there.received("small")) == 4)
        with admin(here) as adm:
            assert adm.delete("/tenants/a").status_code == 200
        there.apply_admin_feed()
        for s in (here, there):
            s.set_faults("small", hold=False)
        for t in threads:
            t.join(30)
        assert [a.status_code for a in answers] == [200] * 4  # admitted: answered
        assert _log_rows(here, "a") == [] and _log_rows(there, "a") == []
        assert len(_log_rows(here, "b")) == 2  # the other tenant's rows are kept
        # A tenant of the same name created later logs again.
        with admin(here) as adm:
            key = adm.post("/keys", json={"tenant": "a", "name": "new"}).json()["key"]
        there.apply_admin_feed()
        assert chat(there, "Asked after the deletion?", key=key).status_code == 200
        assert len(_log_rows(there, "a")) == 1
    finally:
        here.stop()
        there.stop()
