"""Usage limits per API key as well as per tenant; revoked configuration-file keys

``limit_counters`` and ``limit_overrides`` gain a ``scope`` (tenant | key) and
their ``tenant`` column becomes ``subject`` (a tenant name or a key id). Both are
rebuilt (a primary key cannot be altered on SQLite) and their rows copied as
tenant rows, so a budget period's spending survives the upgrade.
``admin_revoked_keys`` lists the digests of configuration-file keys revoked
through the admin API (API-made keys keep ``admin_keys.revoked_at``).

Revision ID: 0004_key_limits
Revises: 0003_limits_request_log
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0004_key_limits"
down_revision = "0003_limits_request_log"
branch_labels = None
depends_on = None

COUNTER_COLUMNS = "kind, window_no, value, updated_at"
OVERRIDE_COLUMNS = "fields, updated_at, updated_by"


def _counters(name: str, *, scoped: bool) -> None:
    head = (
        [sa.Column("scope", sa.String(8), primary_key=True),
         sa.Column("subject", sa.String(160), primary_key=True)]
        if scoped else [sa.Column("tenant", sa.String(128), primary_key=True)]
    )  # fmt: skip
    op.create_table(
        name,
        *head,
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("window_no", sa.BigInteger(), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def _overrides(name: str, *, scoped: bool) -> None:
    head = (
        [sa.Column("scope", sa.String(8), primary_key=True),
         sa.Column("subject", sa.String(160), primary_key=True)]
        if scoped else [sa.Column("tenant", sa.String(128), primary_key=True)]
    )  # fmt: skip
    op.create_table(
        name,
        *head,
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )


def _swap(table: str, build: Callable[..., None], *, scoped: bool, copy: str) -> None:
    """Builds ``table``'s new shape under a new name, copies, then replaces the old one
    (new names throughout, so PostgreSQL's constraint names never collide)."""
    new = f"{table}_new"
    build(new, scoped=scoped)
    op.execute(copy.format(new=new, old=table))
    op.drop_table(table)
    op.rename_table(new, table)


def upgrade() -> None:
    _swap(
        "limit_counters",
        _counters,
        scoped=True,
        copy=f"INSERT INTO {{new}} (scope, subject, {COUNTER_COLUMNS}) "
        f"SELECT 'tenant', tenant, {COUNTER_COLUMNS} FROM {{old}}",
    )
    _swap(
        "limit_overrides",
        _overrides,
        scoped=True,
        copy=f"INSERT INTO {{new}} (scope, subject, {OVERRIDE_COLUMNS}) "
        f"SELECT 'tenant', tenant, {OVERRIDE_COLUMNS} FROM {{old}}",
    )
    op.create_table(
        "admin_revoked_keys",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(160), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.Column("revoked_by", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("admin_revoked_keys")
    # Key rows have no place in the old shape: only tenant rows are kept.
    _swap(
        "limit_overrides",
        _overrides,
        scoped=False,
        copy=f"INSERT INTO {{new}} (tenant, {OVERRIDE_COLUMNS}) "
        f"SELECT subject, {OVERRIDE_COLUMNS} FROM {{old}} WHERE scope = 'tenant'",
    )
    _swap(
        "limit_counters",
        _counters,
        scoped=False,
        copy=f"INSERT INTO {{new}} (tenant, {COUNTER_COLUMNS}) "
        f"SELECT subject, {COUNTER_COLUMNS} FROM {{old}} WHERE scope = 'tenant'",
    )
