"""Every table the SQL backends define, in one registry: what the migrations must create.

A module that defines tables adds its ``MetaData`` to :data:`REGISTERED`.
tests/migrations compares a database upgraded to ``head`` with
:func:`combined_metadata`, so a table (or column, index, default) that no
migration creates fails the suite; it also fails when a module of the
package holds a ``MetaData`` that is not registered here.
"""

from sqlalchemy import MetaData

from syncserver.accounts import reset_codes
from syncserver.auth import credential_changes, ldap_ids
from syncserver.auth import sql as auth_sql
from syncserver.nodes import sql as nodes_sql
from syncserver.storage import sql_schema
from syncserver.throttle import sql_store as throttle_sql
from syncserver.tokenserver import users_sql as tokenserver_sql

#: The ``MetaData`` of each SQL backend module.
REGISTERED = (
    sql_schema.metadata,
    auth_sql.metadata,
    credential_changes.metadata,
    nodes_sql.metadata,
    ldap_ids.metadata,
    reset_codes.metadata,
    throttle_sql.metadata,
    tokenserver_sql.metadata,
)


def combined_metadata():
    """One ``MetaData`` holding a copy of every registered table."""
    combined = MetaData()
    for metadata in REGISTERED:
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined
