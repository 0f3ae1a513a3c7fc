"""Per-category cache policies through /admin/policies, audited and applied at once."""

from __future__ import annotations

from proxy.wiring import DEFAULT_POLICIES
from tests.admin.conftest import admin, ask, error_of, oai
from tests.stack import Stack

CODE = DEFAULT_POLICIES["code"]  # the built-in policy these tests start from


def test_read_list_and_configured_vs_effective(stack: Stack) -> None:
    with admin(stack) as a:
        listed = a.get("/policies").json()
        names = {p["category"] for p in listed["data"]}
        assert {"code", "math", "creative", "time_sensitive"} <= names
        code = a.get("/policies/code").json()
        assert code["source"] == "configured"
        assert code["overrides"] == {}
        assert code["configured"]["similarity_threshold"] == CODE["similarity_threshold"]
        assert code["effective"] == code["configured"]
        unknown = a.get("/policies/brand-new").json()  # an unlisted category: the default
        assert unknown["configured"] == listed["default"]


def test_create_replace_patch_delete_and_audit(stack: Stack) -> None:
    with admin(stack, actor="alice") as a:
        r = a.post("/policies", json={"category": "code", "ttl_seconds": 60})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["source"] == "admin"
        assert body["overrides"] == {"ttl_seconds": 60}
        assert body["effective"]["ttl_seconds"] == 60
        # the configured value is kept
        assert body["effective"]["similarity_threshold"] == CODE["similarity_threshold"]
        assert body["configured"]["ttl_seconds"] == 30 * 86400
        assert body["updated_by"] == "admin:alice"
        again = a.post("/policies", json={"category": "code"})
        assert again.status_code == 409

        r = a.patch("/policies/code", json={"similarity_threshold": 0.95})
        assert r.json()["overrides"] == {"ttl_seconds": 60, "similarity_threshold": 0.95}
        r = a.put("/policies/code", json={"enabled": False, "threshold_floor": None})
        assert r.json()["overrides"] == {"enabled": False, "threshold_floor": None}
        assert r.json()["effective"]["ttl_seconds"] == 30 * 86400  # PUT replaced the override
        assert r.json()["effective"]["enabled"] is False

        r = a.delete("/policies/code")
        assert r.status_code == 200
        assert r.json()["source"] == "configured"
        assert r.json()["effective"]["enabled"] is True
        assert a.delete("/policies/code").status_code == 404

        audit = a.get("/audit", params={"kind": "policy"}).json()
        assert audit["total"] == 4
        actions = [(e["action"], e["old"], e["new"]) for e in audit["data"]]
        assert actions == [  # newest first
            ("delete", {"enabled": False, "threshold_floor": None}, None),
            (
                "replace",
                {"ttl_seconds": 60, "similarity_threshold": 0.95},
                {"enabled": False, "threshold_floor": None},
            ),
            ("patch", {"ttl_seconds": 60}, {"ttl_seconds": 60, "similarity_threshold": 0.95}),
            ("create", None, {"ttl_seconds": 60}),
        ]
        assert {e["actor"] for e in audit["data"]} == {"admin:alice"}
        assert all(e["target"] == "code" and e["request_id"] for e in audit["data"])
        page = a.get("/audit", params={"kind": "policy", "offset": 1, "limit": 2}).json()
        assert [e["action"] for e in page["data"]] == ["replace", "patch"]


def test_invalid_values_name_the_field(stack: Stack) -> None:
    with admin(stack) as a:
        cases = [
            ({"similarity_threshold": 1.5}, 400, "similarity_threshold"),
            ({"ttl_seconds": 0}, 400, "ttl_seconds"),
            ({"max_entries": 0}, 400, "max_entries"),
            ({"ttl_max_factor": 0.5}, 400, "ttl_max_factor"),
            ({"threshold_floor": 0.99}, 400, "threshold_floor"),  # above the threshold
            ({"equivalence_threshold": -1}, 400, "equivalence_threshold"),
            ({"eviction": "random"}, 422, "eviction"),
            ({"enabled": "yes"}, 422, "enabled"),
            ({"max_entries": 1.5}, 422, "max_entries"),
            ({"ttl_seconds": None}, 400, "ttl_seconds"),
            ({"similarity_treshold": 0.9}, 422, "similarity_treshold"),
        ]
        for body, status, field in cases:
            r = a.patch("/policies/code", json=body)
            assert r.status_code == status, (body, r.text)
            err = error_of(r)
            assert err["param"] == field, (body, err)
            assert field in err["message"]
        r = a.post("/policies", json={"category": "bad name!"})
        assert r.status_code == 422 and error_of(r)["param"] == "category"
        assert a.get("/audit").json()["total"] == 0  # nothing refused was recorded
        assert a.get("/policies/code").json()["source"] == "configured"


def test_a_policy_change_applies_to_the_next_request(stack: Stack) -> None:
    q = "What is the boiling point of water at sea level?"
    with oai(stack) as c, admin(stack) as a:
        first = ask(c, q)
        category = first.headers["x-cachegate-category"]
        stack.flush_writes()
        assert ask(c, q).headers["x-cachegate-cache"] == "hit"
        r = a.patch(f"/policies/{category}", json={"enabled": False})
        assert r.status_code == 200
        assert ask(c, q).headers["x-cachegate-cache"] != "hit"
        a.delete(f"/policies/{category}")
        assert ask(c, q).headers["x-cachegate-cache"] == "hit"
