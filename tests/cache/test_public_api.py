from __future__ import annotations

import contextlib
import inspect
import sqlite3
from pathlib import Path

import cache


def test_all_names_resolve_and_cover_the_proxy_api() -> None:
    for name in cache.__all__:
        assert hasattr(cache, name), name
    needed = {"CacheScope", "CategoryPolicy", "PolicySet", "CacheHit", "NewEntry", "Neighbour",
              "SemanticCache", "CacheError", "PolicyError", "CacheUnavailable", "migrate"}  # fmt: skip
    assert needed <= set(cache.__all__)
    assert sorted(cache.__all__) == sorted(set(cache.__all__))


def test_errors_form_one_tree() -> None:
    for name in ("PolicyError", "CacheUnavailable", "EntryNotFound"):
        assert issubclass(getattr(cache, name), cache.CacheError)


def test_migrate_is_a_plain_function_taking_a_url() -> None:
    assert list(inspect.signature(cache.migrate).parameters) == ["url"]


def test_sync_migrate_outside_a_loop(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    cache.migrate(f"sqlite+aiosqlite:///{db}")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master")}
    assert {"cache_entries", "cache_changes", "alembic_version"} <= tables
