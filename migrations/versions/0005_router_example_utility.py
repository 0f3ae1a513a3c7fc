"""router_example_utility: in-context example utilities shared by every replica

One Beta(alpha, beta) row per cache entry used as an example; replicas add
each outcome to the row with an atomic upsert (``router.utility_store``).

Revision ID: 0005_router_example_utility
Revises: 0004_key_limits
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_router_example_utility"
down_revision = "0004_key_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "router_example_utility",
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("beta", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_router_example_utility_updated_at", "router_example_utility", ["updated_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_router_example_utility_updated_at", table_name="router_example_utility")
    op.drop_table("router_example_utility")
