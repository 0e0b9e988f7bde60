"""Per-user quota: storage_users.quota_kb (NULL: storage.quota_size applies).

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("storage_users", sa.Column("quota_kb", sa.BigInteger, nullable=True))


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
