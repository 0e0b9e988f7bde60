"""Sync 1.5 tokenserver: its users (token_users), their lock and block (token_accounts).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

``token_users`` maps a Mozilla account to its Sync 1.5 uids and nodes
(reference §1.5); its ``node_id`` points into the node list of 0003 and
becomes NULL when that node is removed. ``token_accounts`` holds one row
per account, locked by every change to it, and the administrator's block.
See :mod:`syncserver.tokenserver.users_sql`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
               "mysql_collate": "utf8mb4_bin"}


def missing(name):
    if op.get_context().as_sql:
        return True
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade():
    if missing("token_users"):
        op.create_table(
            "token_users",
            sa.Column("uid", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                      primary_key=True, autoincrement=True),
            sa.Column("email", sa.String(255), nullable=False),
            sa.Column("fxa_uid", sa.String(64), nullable=False),
            sa.Column("generation", sa.BigInteger, nullable=False),
            sa.Column("client_state", sa.String(32), nullable=False),
            sa.Column("keys_changed_at", sa.BigInteger, nullable=True),
            sa.Column("created_at", sa.BigInteger, nullable=False),
            sa.Column("replaced_at", sa.BigInteger, nullable=True),
            sa.Column("node_id", sa.Integer,
                      sa.ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
            sqlite_autoincrement=True,
            **MYSQL_TABLE)
        op.create_index("token_users_lookup_idx", "token_users", ["email", "created_at"])
        op.create_index("token_users_replaced_at_idx", "token_users", ["replaced_at"])
        op.create_index("token_users_node_idx", "token_users", ["node_id"])
    if missing("token_accounts"):
        op.create_table(
            "token_accounts",
            sa.Column("email", sa.String(255), primary_key=True),
            sa.Column("blocked", sa.Boolean, nullable=False),
            sa.Column("created_at", sa.BigInteger, nullable=False),
            **MYSQL_TABLE)


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
