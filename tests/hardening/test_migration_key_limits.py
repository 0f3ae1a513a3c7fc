"""Migration 0004_key_limits: tenant counters and overrides survive the upgrade (as
tenant rows) and the downgrade (key rows cannot, they are dropped)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from cache.migrate import alembic_config


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


def test_upgrade_and_downgrade_keep_tenant_rows(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    cfg = alembic_config(f"sqlite+aiosqlite:///{db}")
    command.upgrade(cfg, "0003_limits_request_log")
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO limit_counters VALUES ('a', 'cost', 7, 1.5, 10.0)")
        conn.execute("INSERT INTO limit_overrides VALUES ('a', '{\"budget_dollars\": 2}', 1, 'x')")
    command.upgrade(cfg, "0004_key_limits")
    assert _rows(db, "SELECT scope, subject, kind, window_no, value FROM limit_counters") == [
        ("tenant", "a", "cost", 7, 1.5)
    ]
    assert _rows(db, "SELECT scope, subject, fields FROM limit_overrides") == [
        ("tenant", "a", '{"budget_dollars": 2}')
    ]
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO limit_counters VALUES ('key', 'cfg:K', 'cost', 7, 0.5, 10.0)")
        conn.execute("INSERT INTO admin_revoked_keys VALUES ('d' , 'cfg:K', 'a', 1.0, 'x')")
    command.downgrade(cfg, "0003_limits_request_log")
    assert _rows(db, "SELECT tenant, kind, window_no, value FROM limit_counters") == [
        ("a", "cost", 7, 1.5)
    ]
    assert _rows(db, "SELECT tenant FROM limit_overrides") == [("a",)]
