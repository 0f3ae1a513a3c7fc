"""SQL tables of the document store (the Alembic migrations create the same)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Times are epoch seconds (double precision) so an injected clock drives TTLs in tests.
cache_entries = sa.Table(
    "cache_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(255), nullable=False),
    sa.Column("model_alias", sa.String(255), nullable=False),
    sa.Column("fingerprint", sa.String(255), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("exact_hash", sa.String(64), nullable=False),
    sa.Column("request_text", sa.Text(), nullable=False),
    sa.Column("answer", sa.Text(), nullable=False),
    sa.Column("backend", sa.String(255), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("prompt_tokens", sa.Integer(), nullable=False),
    sa.Column("completion_tokens", sa.Integer(), nullable=False),
    sa.Column("vector", sa.LargeBinary(), nullable=False),
    sa.Column("nbytes", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("last_hit_at", sa.Float(), nullable=True),
    sa.Column("hit_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("delete_reason", sa.String(16), nullable=True),
    sa.Column("feedback_score", sa.Float(), nullable=True),
    sa.Column("utility", sa.Float(), nullable=False, server_default="0.5"),
    # False for answers that depend on more than their request text (an agent step's
    # tool results): never shown as in-context examples (migration 0007).
    sa.Column("example_ok", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Index("ix_cache_entries_live_category", "deleted", "category"),
    sa.Index("ix_cache_entries_live_expiry", "deleted", "expires_at"),
    sa.Index("ix_cache_entries_tenant_category", "tenant", "category"),
    sa.Index("ix_cache_entries_exact_hash", "exact_hash"),
)

# Append-only change feed: every replica polls ``seq > last_seen`` and applies the
# puts and deletes to its in-memory index.
cache_changes = sa.Table(
    "cache_changes",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("entry_id", sa.BigInteger(), nullable=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("at", sa.Float(), nullable=False),
)

# What the store knows about itself; ``vector_space`` names the embedder whose vectors
# ``cache_entries.vector`` holds (cache.vector_space).
cache_meta = sa.Table(
    "cache_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
)

OP_PUT = "put"
OP_DELETE = "del"
