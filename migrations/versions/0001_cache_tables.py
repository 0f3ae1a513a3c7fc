"""cache_entries and cache_changes

Revision ID: 0001_cache_tables
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_cache_tables"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cache_entries",
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
    )
    op.create_index("ix_cache_entries_live_category", "cache_entries", ["deleted", "category"])
    op.create_index("ix_cache_entries_live_expiry", "cache_entries", ["deleted", "expires_at"])
    op.create_index("ix_cache_entries_tenant_category", "cache_entries", ["tenant", "category"])
    op.create_index("ix_cache_entries_exact_hash", "cache_entries", ["exact_hash"])
    op.create_table(
        "cache_changes",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_changes")
    op.drop_index("ix_cache_entries_exact_hash", table_name="cache_entries")
    op.drop_index("ix_cache_entries_tenant_category", table_name="cache_entries")
    op.drop_index("ix_cache_entries_live_expiry", table_name="cache_entries")
    op.drop_index("ix_cache_entries_live_category", table_name="cache_entries")
    op.drop_table("cache_entries")
