"""Node assignment, LDAP user ids, password-reset codes and failed-login counters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

Tables of the node list (``nodes``, ``user_nodes``), the numeric ids of
directory users (``ldap_users``), password-reset codes (``reset_codes``) and
the brute-force counters (``login_failures``). Like 0001 it creates only
what is missing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
               "mysql_collate": "utf8mb4_bin"}


def serial():
    """A 64-bit autoincrement key; SQLite's AUTOINCREMENT needs exactly INTEGER."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def missing(name):
    if op.get_context().as_sql:
        return True
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade():
    if missing("nodes"):
        op.create_table(
            "nodes",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("url", sa.String(255), nullable=False, unique=True),
            sa.Column("capacity", sa.Integer, nullable=False),
            sa.Column("current_load", sa.Integer, nullable=False, server_default="0"),
            sa.Column("available", sa.Boolean, nullable=False),
            sa.Column("downed", sa.Boolean, nullable=False),
            sa.Column("backoff", sa.Integer, nullable=False, server_default="0"),
            sqlite_autoincrement=True,
            **MYSQL_TABLE)
    if missing("user_nodes"):
        op.create_table(
            "user_nodes",
            sa.Column("username", sa.String(32), primary_key=True),
            sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), nullable=False),
            sa.Column("assigned_at", sa.BigInteger, nullable=True),
            **MYSQL_TABLE)
        op.create_index("ix_user_nodes_node_id", "user_nodes", ["node_id"])
    if missing("ldap_users"):
        op.create_table(
            "ldap_users",
            sa.Column("userid", serial(), primary_key=True, autoincrement=True),
            sa.Column("username", sa.String(32), nullable=False, unique=True),
            sa.Column("created_at", sa.BigInteger, nullable=True),
            sqlite_autoincrement=True,
            **MYSQL_TABLE)
    if missing("reset_codes"):
        op.create_table(
            "reset_codes",
            sa.Column("userid", serial(), primary_key=True, autoincrement=False),
            sa.Column("code_hash", sa.String(64), nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=False),
            **MYSQL_TABLE)
        op.create_index("ix_reset_codes_expires_at", "reset_codes", ["expires_at"])
    if missing("login_failures"):
        op.create_table(
            "login_failures",
            sa.Column("counter_key", sa.String(191), primary_key=True),
            sa.Column("hits", sa.Integer, nullable=False),
            sa.Column("updated_at", sa.BigInteger, nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=False),
            **MYSQL_TABLE)
        op.create_index("ix_login_failures_expires_at", "login_failures", ["expires_at"])


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
