"""The admin key guards every /admin route; the schema documents them all."""

from __future__ import annotations

from pathlib import Path

import httpx

from backends.embedding import Embedder
from tests.admin.conftest import ADMIN_KEY, CLIENT_KEY, admin, error_of, start
from tests.stack import Stack, free_port

GETS = [
    "/policies",
    "/policies/code",
    "/audit",
    "/categories",
    "/categories/evaluation",
    "/cache/stats",
    "/cache/entries",
    "/router",
    "/backends",
    "/keys",
]


def test_needs_the_admin_key(stack: Stack) -> None:
    with admin(stack) as a:
        for path in GETS:
            url = stack.url + "/admin" + path
            missing = httpx.get(url)
            assert missing.status_code == 401, path
            assert error_of(missing)["type"] == "authentication_error"
            assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
            client = httpx.get(url, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
            assert client.status_code == 403, path
            assert "client key" in error_of(client)["message"]
            ok = a.get(path)
            assert ok.status_code == 200, (path, ok.text)


def test_writes_are_guarded_before_the_body_is_read(stack: Stack) -> None:
    r = httpx.post(stack.url + "/admin/keys", json={"bad": 1})
    assert r.status_code == 401
    r = httpx.post(
        stack.url + "/admin/cache/flush",
        json={"all": True},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert r.status_code == 403


def test_no_admin_key_configured_disables_the_api(embedder: Embedder, tmp_path: Path) -> None:
    def no_admin(cfg: dict[str, object]) -> None:
        cfg["auth"] = {"require_keys": True, "admin_key_env": "UNSET_ADMIN_KEY"}

    s = start(embedder, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", no_admin)
    try:
        r = httpx.get(s.url + "/admin/policies", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 403
        assert "disabled" in error_of(r)["message"]
    finally:
        s.stop()


def test_openapi_lists_every_admin_route_with_models(stack: Stack) -> None:
    spec = httpx.get(stack.url + "/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/admin/policies": {"get", "post"},
        "/admin/policies/{category}": {"get", "put", "patch", "delete"},
        "/admin/audit": {"get"},
        "/admin/categories": {"get", "post"},
        "/admin/categories/{name}": {"get", "delete"},
        "/admin/categories/{name}/examples": {"post", "delete"},
        "/admin/categories/retrain": {"post"},
        "/admin/categories/evaluation": {"get"},
        "/admin/cache/stats": {"get"},
        "/admin/cache/entries": {"get", "post"},
        "/admin/cache/entries/{entry_id}": {"delete"},
        "/admin/cache/flush": {"post"},
        "/admin/router": {"get", "patch", "delete"},
        "/admin/router/recalibrate": {"post"},
        "/admin/backends": {"get"},
        "/admin/keys": {"get", "post"},
        "/admin/keys/{key_id}": {"delete"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for method in methods:
            op = paths[path][method]
            ok = next(c for c in op["responses"] if c.startswith("2"))
            assert "$ref" in op["responses"][ok]["content"]["application/json"]["schema"]
            assert "401" in op["responses"] and "403" in op["responses"]


def test_store_down_at_start_up_is_503_not_a_crash(embedder: Embedder) -> None:
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    s = start(embedder, down)
    try:
        with admin(s) as a:
            r = a.get("/policies")
            assert r.status_code == 503
            assert "admin store is unavailable" in error_of(r)["message"]
            assert a.get("/backends").status_code == 200  # needs no store
            assert a.get("/cache/stats").status_code == 503
    finally:
        s.stop()


def test_store_errors_reach_admins_as_the_drivers_message_only() -> None:
    """An admin 503 says what the driver said, not SQLAlchemy's SQL text and doc link."""
    from sqlalchemy.exc import OperationalError

    from proxy.admin.store import _reason

    failed = OperationalError(
        "INSERT INTO admin_keys (id) VALUES ($1)", {}, ConnectionRefusedError(111, "refused")
    )
    assert "[SQL:" in str(failed)
    assert _reason(failed) == "[Errno 111] refused"
    assert _reason(OperationalError("SELECT 1", {}, TimeoutError())) == "TimeoutError()"
    assert _reason(OSError("disk full")) == "disk full"


def test_bodies_are_json_whatever_their_content_type(stack: Stack) -> None:
    # The README's curl examples send `-d '{...}'`, which curl labels form data; the
    # admin API reads it as the JSON it is (as the OpenAI routes do), and says plainly
    # when a body is not JSON.
    body = b'{"tenant": "acme", "dry_run": true}'
    with admin(stack) as a:
        for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):
            headers = {"content-type": content_type} if content_type else {}
            r = a.post("/cache/flush", content=body, headers=headers)
            assert r.status_code == 200, (content_type, r.text)
            assert r.json()["tenant"] == "acme" and r.json()["dry_run"] is True
        for broken in (b'{"tenant": "acme", "dry_run": tru', b"tenant=acme&dry_run=true"):
            r = a.post("/cache/flush", content=broken, headers={"content-type": "text/plain"})
            assert r.status_code == 400, r.text
            err = error_of(r)
            assert err["code"] == "invalid_json" and "JSON body" in err["message"]
        wrong = a.post("/cache/flush", json={"tenant": 3})
        assert wrong.status_code == 422 and error_of(wrong)["param"] == "tenant"
        assert a.get("/cache/stats").status_code == 200
        assert a.delete("/router").status_code == 200  # no body at all
