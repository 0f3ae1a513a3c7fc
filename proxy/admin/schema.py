"""SQL tables of the admin API (migration ``0002_admin_tables`` creates the same).

``admin_audit`` is both the audit trail and the change feed: every change the
admin API makes appends one row in the same transaction as the change itself,
and each replica polls ``id > last_seen`` to pick up the others' changes.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Per-category policy overrides: only the fields an operator set (JSON object);
# the other fields come from the configuration.
admin_policies = sa.Table(
    "admin_policies",
    metadata,
    sa.Column("category", sa.String(64), primary_key=True),
    sa.Column("overrides", sa.Text(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

# Client keys made through the API: the SHA-256 digest only, never the secret.
admin_keys = sa.Table(
    "admin_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("revoked_at", sa.Float(), nullable=True),
)

# Configuration-file keys revoked through the admin API (migration 0004_key_limits):
# their digests, refused by every replica even though the file still names them.
admin_revoked_keys = sa.Table(
    "admin_revoked_keys",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(160), nullable=False),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("revoked_at", sa.Float(), nullable=False),
    sa.Column("revoked_by", sa.String(128), nullable=False),
)

# Named JSON settings (today only "router": threshold, target share, overrides).
admin_settings = sa.Table(
    "admin_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
)

admin_audit = sa.Table(
    "admin_audit",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float(), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("old", sa.Text(), nullable=True),
    sa.Column("new", sa.Text(), nullable=True),
    sa.Index("ix_admin_audit_kind", "kind", "id"),
)
