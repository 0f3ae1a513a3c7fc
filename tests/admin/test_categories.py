"""/admin/categories: a new category starts catching matching requests at once."""

from __future__ import annotations

from tests.admin.conftest import admin, ask, error_of, oai
from tests.stack import Stack

LEGAL = [
    "Can my landlord keep my security deposit after I move out?",
    "How do I file a small claims lawsuit against a contractor?",
    "Is a verbal agreement legally binding in a contract dispute?",
    "What are my rights if I am wrongfully terminated by my employer?",
    "Do I need a lawyer to write a will and testament?",
    "How long does a copyright last before it enters the public domain?",
    "Can I sue for breach of contract if the seller never delivered?",
    "What is the statute of limitations for a personal injury claim?",
]
PROBE = "Can my employer legally fire me for taking medical leave?"


def test_new_category_catches_queries_on_the_request_path(stack: Stack) -> None:
    with admin(stack, actor="carol") as a, oai(stack) as c:
        before = ask(c, PROBE).headers["x-cachegate-category"]
        assert before != "legal"
        names = {d["name"] for d in a.get("/categories").json()["data"]}
        assert "legal" not in names and "code" in names

        r = a.post(
            "/categories",
            json={"name": "legal", "description": "law and legal rights", "examples": LEGAL[:5]},
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["category"]["example_count"] == 5
        assert created["evaluation"]["examples"] > 5
        assert ask(c, PROBE).headers["x-cachegate-category"] == "legal"

        more = a.post("/categories/legal/examples", json={"examples": LEGAL[5:]}).json()
        assert more["category"]["example_count"] == 8
        assert set(a.get("/categories/legal").json()["examples"]) == set(LEGAL)
        fewer = a.request("DELETE", "/categories/legal/examples", json={"examples": LEGAL[:2]})
        assert fewer.json()["category"]["example_count"] == 6

        listed = {d["name"]: d for d in a.get("/categories").json()["data"]}
        assert listed["legal"]["example_count"] == 6
        assert listed["legal"]["description"] == "law and legal rights"

        dup = a.post("/categories", json={"name": "legal", "examples": ["x"]})
        assert dup.status_code == 400 and "already exists" in error_of(dup)["message"]
        bad = a.post("/categories", json={"name": "Bad Name", "examples": ["x"]})
        assert bad.status_code == 400 and "name" in error_of(bad)["message"]
        empty = a.post("/categories", json={"name": "empty", "examples": []})
        assert empty.status_code == 422 and error_of(empty)["param"] == "examples"
        missing = a.post("/categories/nope/examples", json={"examples": ["x"]})
        assert missing.status_code == 404 and error_of(missing)["code"] == "unknown_category"
        assert a.get("/categories/nope").status_code == 404
        assert a.delete("/categories/general").status_code == 400  # the fallback stays

        evaluation = a.post("/categories/retrain", json={}).json()
        assert 0.0 <= evaluation["accuracy"] <= 1.0
        assert a.get("/categories/evaluation").json() == evaluation

        assert a.delete("/categories/legal").status_code == 200
        assert ask(c, PROBE).headers["x-cachegate-category"] != "legal"
        audit = a.get("/audit", params={"kind": "category"}).json()["data"]
        assert [e["action"] for e in audit] == [
            "delete", "retrain", "remove_examples", "add_examples", "create",
        ]  # fmt: skip
        assert audit[-1]["new"]["examples"] == LEGAL[:5]
        assert {e["actor"] for e in audit} == {"admin:carol"}
