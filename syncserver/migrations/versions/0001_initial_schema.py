"""The schema as create_tables made it before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

Creates only the tables that are missing, so that a database made by the
old ``create_tables`` path upgrades without being stamped by hand, and seeds
the standard collection ids (existing rows are kept).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
               "mysql_collate": "utf8mb4_bin"}

#: The ids Mozilla's servers gave the standard collections.
FIXED_COLLECTIONS = {
    "clients": 1, "crypto": 2, "forms": 3, "history": 4, "keys": 5, "meta": 6,
    "bookmarks": 7, "prefs": 8, "tabs": 9, "passwords": 10, "addons": 11,
}


def item_id():
    """Ids compare byte for byte: VARBINARY on MySQL (its collations ignore trailing spaces)."""
    return sa.String(64).with_variant(mysql.VARBINARY(64), "mysql", "mariadb")


def serial():
    """A 64-bit autoincrement key; SQLite's AUTOINCREMENT needs exactly INTEGER."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def missing(name):
    if op.get_context().as_sql:
        return True
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade():
    if missing("collections"):
        op.create_table(
            "collections",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("name", sa.String(32), nullable=False, unique=True),
            **MYSQL_TABLE)
    if missing("user_collections"):
        op.create_table(
            "user_collections",
            sa.Column("userid", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("collection", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("modified", sa.BigInteger, nullable=False),
            **MYSQL_TABLE)
    if missing("storage_users"):
        op.create_table(
            "storage_users",
            sa.Column("userid", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("last_modified", sa.BigInteger, nullable=False),
            **MYSQL_TABLE)
    if missing("items"):
        op.create_table(
            "items",
            sa.Column("userid", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("collection", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("id", item_id(), primary_key=True),
            sa.Column("sortindex", sa.Integer),
            sa.Column("parentid", item_id()),
            sa.Column("predecessorid", item_id()),
            sa.Column("modified", sa.BigInteger),
            sa.Column("payload", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")),
            sa.Column("payload_size", sa.Integer, nullable=False, server_default="0"),
            sa.Column("ttl", sa.BigInteger, nullable=False),
            **MYSQL_TABLE)
        op.create_index("items_modified_idx", "items", ["userid", "collection", "modified", "id"])
        op.create_index("items_sortindex_idx", "items",
                        ["userid", "collection", "sortindex", "id"])
        op.create_index("items_usage_idx", "items",
                        ["userid", "collection", "payload_size", "ttl"])
        op.create_index("items_expiry_idx", "items", ["ttl"])
    if missing("users"):
        op.create_table(
            "users",
            sa.Column("userid", serial(), primary_key=True, autoincrement=True),
            sa.Column("username", sa.String(32), nullable=False, unique=True),
            sa.Column("password_hash", sa.String(255), nullable=False),
            sa.Column("email", sa.String(255), nullable=True),
            sa.Column("status", sa.SmallInteger, nullable=False, server_default="1"),
            sa.Column("sync_node", sa.String(255), nullable=True),
            sa.Column("created_at", sa.BigInteger, nullable=True),
            sqlite_autoincrement=True,
            **MYSQL_TABLE)
    if missing("credential_changes"):
        op.create_table(
            "credential_changes",
            sa.Column("id", serial(), primary_key=True, autoincrement=True),
            sa.Column("username", sa.String(32), nullable=False),
            sa.Column("changed_at", sa.BigInteger, nullable=False),
            sqlite_autoincrement=True,
            **MYSQL_TABLE)
        op.create_index("ix_credential_changes_changed_at", "credential_changes",
                        ["changed_at"])
    seed_collections()


def seed_collections():
    collections = sa.table("collections", sa.column("id", sa.Integer),
                           sa.column("name", sa.String))
    if op.get_context().as_sql:
        present = set()
    else:
        present = set(op.get_bind().execute(sa.select(collections.c.name)).scalars())
    rows = [{"id": cid, "name": name} for name, cid in FIXED_COLLECTIONS.items()
            if name not in present]
    if rows:
        op.bulk_insert(collections, rows)


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
