"""/admin/router (threshold, target share, overrides) and /admin/backends."""

from __future__ import annotations

from collections.abc import Iterable

from proxy.services import Services
from tests.admin.conftest import admin, error_of
from tests.stack import Stack


def _scores(stack: Stack, values: Iterable[float]) -> None:
    async def add(s: Services) -> None:
        s.router_scores.extend(values)

    stack.call(add)


def _threshold(stack: Stack) -> float | None:
    async def read(s: Services) -> float | None:
        return s.router_config.threshold

    return stack.call(read)


def test_threshold_share_overrides_and_reset(stack: Stack) -> None:
    with admin(stack) as a:
        view = a.get("/router").json()
        assert view["kind"] == "blend" and view["recent_scores"] == 0
        assert view["examples"]["k"] == 3

        r = a.patch("/router", json={"threshold": 0.3})
        assert r.status_code == 200 and r.json()["threshold"] == 0.3
        assert _threshold(stack) == 0.3
        for body, field in (
            ({"threshold": 1.5}, "threshold"),
            ({"target_large_share": 0.2}, "target_large_share"),  # no scores yet
            ({"threshold": 0.2, "target_large_share": 0.2}, "target_large_share"),
            ({"category_overrides": {"code": "medium"}}, "category_overrides.code"),
        ):
            bad = a.patch("/router", json=body)
            assert 400 <= bad.status_code < 500, (body, bad.text)
            assert error_of(bad)["param"] == field, (body, bad.text)

        _scores(stack, [i / 100 for i in range(100)])
        r = a.patch("/router", json={"target_large_share": 0.25}).json()
        assert 0.24 <= r["threshold"] <= 0.26
        assert r["target_large_share"] == 0.25 and r["recent_large_share"] == 0.25
        _scores(stack, [0.9] * 100)  # traffic got easier: recalibrate keeps the share
        r = a.post("/router/recalibrate").json()
        assert r["recent_large_share"] == 0.25 and r["threshold"] < 0.9

        r = a.patch("/router", json={"category_overrides": {"code": "large"}}).json()
        assert r["category_overrides"] == {"code": "large"}
        assert r["target_large_share"] == 0.25  # untouched
        r = a.delete("/router").json()
        assert r["threshold"] is None and r["category_overrides"] == {}
        actions = [e["action"] for e in a.get("/audit", params={"kind": "router"}).json()["data"]]
        assert actions == ["reset", "patch", "recalibrate", "patch", "patch"]


def test_backends_status(stack: Stack) -> None:
    with admin(stack) as a:
        data = a.get("/backends").json()["data"]
        assert [(b["name"], b["tier"]) for b in data] == [("small", "small"), ("large", "large")]
        for b in data:
            assert b["circuit"] == "closed" and b["healthy"] is True
            assert b["max_concurrency"] == 64 and b["in_flight"] == 0
