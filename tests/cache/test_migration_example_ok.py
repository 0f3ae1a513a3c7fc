"""Migration 0007_cache_example_ok: entries stored before it stay example material."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from cache.migrate import alembic_config

ROW = (
    "INSERT INTO cache_entries (tenant, model_alias, fingerprint, category, exact_hash,"
    " request_text, answer, backend, tier, prompt_tokens, completion_tokens, vector, nbytes,"
    " created_at, expires_at) VALUES ('t', 'auto', 'f', 'general', 'h', 'q', '{}', 'b',"
    " 'large', 1, 1, x'00', 1, 0.0, 1.0)"
)


def test_upgrade_marks_existing_entries_as_examples_and_downgrade_drops_the_column(
    tmp_path: Path,
) -> None:
    db = tmp_path / "m.db"
    cfg = alembic_config(f"sqlite+aiosqlite:///{db}")
    command.upgrade(cfg, "0006_cache_meta")
    with sqlite3.connect(db) as conn:
        conn.execute(ROW)
    command.upgrade(cfg, "0007_cache_example_ok")
    with sqlite3.connect(db) as conn:
        assert list(conn.execute("SELECT request_text, example_ok FROM cache_entries")) == [
            ("q", 1)
        ]
    command.downgrade(cfg, "0006_cache_meta")
    with sqlite3.connect(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(cache_entries)")]
        assert "example_ok" not in columns and "utility" in columns
        assert list(conn.execute("SELECT request_text FROM cache_entries")) == [("q",)]
