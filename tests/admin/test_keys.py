"""/admin/keys: a key made at run time works with the official client until revoked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.admin.conftest import admin, error_of, oai
from tests.stack import Stack


async def _stored_rows(url: str) -> list[dict[str, object]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT * FROM admin_keys"))
            return [dict(r._mapping) for r in rows]
    finally:
        await engine.dispose()


def test_create_use_list_revoke(stack: Stack, tmp_path: Path) -> None:
    with admin(stack, actor="dave") as a:
        r = a.post("/keys", json={"tenant": "acme", "name": "ci"})
        assert r.status_code == 201, r.text
        made = r.json()
        secret = made["key"]
        assert secret.startswith("cg-") and len(secret) >= 3 + 43  # 256 bits, urlsafe base64
        assert made["tenant"] == "acme" and made["revoked"] is False

        with oai(stack, secret) as c:
            reply = c.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "Say hi"}]
            )
            assert reply.choices[0].message.content

        listed = a.get("/keys").json()["data"]
        assert [k["id"] for k in listed] == [made["id"]]
        assert "key" not in listed[0] and secret not in a.get("/keys").text
        rows = asyncio.run(_stored_rows(stack.settings.storage.url))
        assert len(rows) == 1 and secret not in str(rows)
        assert len(str(rows[0]["digest"])) == 64

        revoked = a.delete(f"/keys/{made['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        with oai(stack, secret) as c, pytest.raises(openai.AuthenticationError):
            c.models.list()
        again = a.delete(f"/keys/{made['id']}")
        assert again.status_code == 404 and error_of(again)["param"] == "key_id"

        bad = a.post("/keys", json={"tenant": ""})
        assert bad.status_code == 422 and error_of(bad)["param"] == "tenant"
        audit = a.get("/audit", params={"kind": "key"}).json()["data"]
        assert [(e["action"], e["actor"]) for e in audit] == [
            ("revoke", "admin:dave"), ("create", "admin:dave"),
        ]  # fmt: skip
        assert secret not in str(audit)
