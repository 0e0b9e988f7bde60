"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Write the operations out in full (no imports of the models): a revision must
create the same schema whatever the models become later. Every database gets
every table (see syncserver/migrations/__init__.py). MySQL tables take
``**MYSQL_TABLE`` options.
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
               "mysql_collate": "utf8mb4_bin"}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    raise NotImplementedError("syncserver does not downgrade; restore a backup instead")
