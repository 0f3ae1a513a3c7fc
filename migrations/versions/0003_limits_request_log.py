"""limit_counters, limit_overrides and request_log

Revision ID: 0003_limits_request_log
Revises: 0002_admin_tables
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_limits_request_log"
down_revision = "0002_admin_tables"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "limit_counters",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("window_no", sa.BigInteger(), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "limit_overrides",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "request_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("cache", sa.String(8), nullable=False),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("backend", sa.String(255), nullable=True),
        sa.Column("router_score", sa.Float(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.String(128), nullable=True),
        sa.Column("rating", sa.Float(), nullable=True),
        sa.Column("rated_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_request_log_tenant_at", "request_log", ["tenant", "at"])
    op.create_index("ix_request_log_at", "request_log", ["at"])
    op.create_index("ix_request_log_response_id", "request_log", ["response_id"])


def downgrade() -> None:
    op.drop_index("ix_request_log_response_id", table_name="request_log")
    op.drop_index("ix_request_log_at", table_name="request_log")
    op.drop_index("ix_request_log_tenant_at", table_name="request_log")
    op.drop_table("request_log")
    op.drop_table("limit_overrides")
    op.drop_table("limit_counters")
