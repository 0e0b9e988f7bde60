"""Sync 1.5 storage: batch uploads (batches, batch_items) and deleted users' tombstones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

``batches`` holds each open batch (a random id, its user, collection,
creation and expiry, and the running totals of what it stages);
``batch_items`` what it stages, one row per (batch, id). Both start empty.

``storage_users.deleted_at`` marks a deleted user: writes for that id are
refused until the purge removes the row (issue 12: a deleted account's rows
must not come back). Existing rows are live users (NULL).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
               "mysql_collate": "utf8mb4_bin"}


def item_id():
    """Ids compare byte for byte: VARBINARY on MySQL (its collations ignore trailing spaces)."""
    return sa.String(64).with_variant(mysql.VARBINARY(64), "mysql", "mariadb")


def upgrade():
    op.add_column("storage_users", sa.Column("deleted_at", sa.BigInteger, nullable=True))
    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("userid", sa.BigInteger, nullable=False),
        sa.Column("collection", sa.Integer, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.Column("records", sa.Integer, nullable=False, server_default="0"),
        sa.Column("payload_bytes", sa.BigInteger, nullable=False, server_default="0"),
        **MYSQL_TABLE)
    op.create_index("batches_owner_idx", "batches", ["userid", "collection"])
    op.create_index("batches_expiry_idx", "batches", ["expires"])
    op.create_table(
        "batch_items",
        sa.Column("batch", sa.String(32), primary_key=True),
        sa.Column("id", item_id(), primary_key=True),
        sa.Column("sortindex", sa.Integer),
        sa.Column("parentid", item_id()),
        sa.Column("predecessorid", item_id()),
        sa.Column("payload", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")),
        sa.Column("payload_size", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ttl", sa.BigInteger),
        **MYSQL_TABLE)


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
