"""The user's usage as a running total: storage_users.usage_bytes, back-filled from the items.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Writes check the quota against ``storage_users.usage_bytes``, read by the
statement that locks the user's row, instead of summing the user's items
(a sum that grew with the user: 4.9 s per write at 10^6 records on
MariaDB). The total counts every stored payload, expired or not, until the
purge removes it; the back-fill below does the same. A user with items but
no ``storage_users`` row (data loaded by hand) gets one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("storage_users", sa.Column("usage_bytes", sa.BigInteger, nullable=False,
                                             server_default="0"))
    op.execute(
        "INSERT INTO storage_users (userid, last_modified, usage_bytes) "
        "SELECT i.userid, COALESCE(MAX(i.modified), 0), 0 FROM items i "
        "WHERE NOT EXISTS (SELECT 1 FROM storage_users u WHERE u.userid = i.userid) "
        "GROUP BY i.userid")
    op.execute(
        "UPDATE storage_users SET usage_bytes = COALESCE((SELECT SUM(i.payload_size) "
        "FROM items i WHERE i.userid = storage_users.userid), 0)")


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
