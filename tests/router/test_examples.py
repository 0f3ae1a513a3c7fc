from __future__ import annotations

import pytest

from router import ExampleCandidate, ExampleConfig, RouterError, build_messages, select_examples


def words(text: str) -> int:
    return len(text.split())


def cand(eid: str, sim: float, util: float = 0.5, **kw: object) -> ExampleCandidate:
    fields: dict[str, object] = {
        "entry_id": eid,
        "tenant": "acme",
        "request_text": f"question {eid}",
        "answer_text": f"answer {eid}",
        "similarity": sim,
        "utility": util,
        "tier": "large",
        "bad_feedback": False,
    }
    fields.update(kw)
    return ExampleCandidate(**fields)  # type: ignore[arg-type]


CONFIG = ExampleConfig(k=3, token_budget=100, similarity_floor=0.6)


def select(cands: list[ExampleCandidate], config: ExampleConfig = CONFIG, category: str = "math"):  # type: ignore[no-untyped-def]
    return select_examples(
        cands, tenant="acme", category=category, config=config, count_tokens=words
    )


def test_only_same_tenant_large_unflagged_above_floor() -> None:
    chosen = select(
        [
            cand("ok", 0.8),
            cand("other-tenant", 0.95, tenant="globex"),
            cand("bad", 0.9, bad_feedback=True),
            cand("small-tier", 0.9, tier="small"),
            cand("too-far", 0.5),
            cand("tool-call-only", 0.9, answer_text=""),  # the stored answer called tools
        ]
    )
    assert [c.entry_id for c in chosen] == ["ok"]


def test_ranked_by_similarity_times_utility_and_capped_at_k() -> None:
    chosen = select(
        [cand("a", 0.9, 0.2), cand("b", 0.7, 0.9), cand("c", 0.8, 0.5), cand("d", 0.65, 0.6)]
    )
    assert [c.entry_id for c in chosen] == ["b", "c", "d"]


def test_token_budget_respected_and_smaller_ones_still_fit() -> None:
    long = cand("long", 0.95, 1.0, answer_text="word " * 95)
    chosen = select([long, cand("x", 0.9), cand("y", 0.8)], ExampleConfig(k=3, token_budget=10))
    assert [c.entry_id for c in chosen] == ["x", "y"]
    assert sum(words(c.request_text) + words(c.answer_text) for c in chosen) <= 10


def test_disabled_per_category() -> None:
    config = ExampleConfig(per_category={"code": False})
    assert select([cand("a", 0.9)], config, category="code") == ()
    assert len(select([cand("a", 0.9)], config, category="math")) == 1


def test_duplicates_counted_once() -> None:
    assert len(select([cand("a", 0.9), cand("a", 0.9)])) == 1


def test_messages_after_system_best_example_last() -> None:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q?"}]
    chosen = select([cand("best", 0.9, 0.9), cand("next", 0.8, 0.5)])
    out = build_messages(msgs, chosen)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert out[1]["content"] == "question next" and out[3]["content"] == "question best"
    assert out[-1] == {"role": "user", "content": "q?"}
    assert msgs == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q?"}]


def test_messages_without_system() -> None:
    out = build_messages([{"role": "user", "content": "q"}], [cand("a", 0.9)])
    assert out[0] == {"role": "user", "content": "question a"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("k", -1), ("token_budget", -5), ("similarity_floor", 2.0)],
)
def test_bad_config_refused(field: str, value: float) -> None:
    with pytest.raises(RouterError, match=field):
        ExampleConfig(**{field: value})  # type: ignore[arg-type]


def test_bad_candidate_refused() -> None:
    with pytest.raises(RouterError, match="utility"):
        cand("a", 0.9, 1.5)
    with pytest.raises(RouterError, match="tier"):
        cand("a", 0.9, tier="medium")
