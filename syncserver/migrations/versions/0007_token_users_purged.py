"""Sync 1.5 tokenserver: ``token_users.purged_at``, when a replaced uid's storage was deleted.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

A row replaced by a key change or a move keeps its client state (it may
never come back) but its storage is deleted after
``tokenserver.replaced_grace_seconds`` by ``syncserver-admin
purge-expired``, which then sets ``purged_at`` so that the next run skips
it. See :mod:`syncserver.admin.replaced_uids`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def has_column(table, name):
    if op.get_context().as_sql:
        return False
    return name in {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade():
    if not has_column("token_users", "purged_at"):
        op.add_column("token_users", sa.Column("purged_at", sa.BigInteger, nullable=True))
        op.create_index("token_users_purge_idx", "token_users", ["purged_at", "replaced_at"])


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
