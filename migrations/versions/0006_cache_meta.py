"""cache_meta: which embedder wrote the cache's vectors

A key/value row per fact the store keeps about itself. ``vector_space`` records the
embedder (its name and its vectors of fixed probe texts) so that a replica started with
another model refuses the store, or flushes it, instead of comparing vectors from two
spaces (``cache.vector_space``).

Revision ID: 0006_cache_meta
Revises: 0005_router_example_utility
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_cache_meta"
down_revision = "0005_router_example_utility"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_meta")
