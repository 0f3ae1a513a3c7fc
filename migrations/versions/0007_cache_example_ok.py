"""cache_entries.example_ok: whether an entry may be shown as an in-context example

An answer to an agent step (a conversation that ends in tool results) depends on those
results, which its request text does not show: as an in-context example for another
request it would teach the small model an answer without its evidence. Such entries are
stored with ``example_ok`` false; every earlier entry is a plain question's answer (true).

Revision ID: 0007_cache_example_ok
Revises: 0006_cache_meta
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_cache_example_ok"
down_revision = "0006_cache_meta"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cache_entries") as batch:
        batch.add_column(
            sa.Column("example_ok", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("cache_entries") as batch:
        batch.drop_column("example_ok")
