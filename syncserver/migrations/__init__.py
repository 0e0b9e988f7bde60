"""Schema migrations (Alembic): what creates and upgrades the SQL databases.

The migration environment (``env.py``, ``versions/``) ships inside the
package; ``alembic.ini`` at the top of the source tree and
``syncserver-admin db upgrade`` both use it, and so does start-up with a
``*.create_tables`` key on: the composition root (:mod:`syncserver.composition`)
runs :func:`ensure_schema`, the same migrations, on each database before the
server serves, and :func:`check_schema` on the others. Backends never import
this package.

One revision history covers every table of every SQL backend
(:mod:`syncserver.migrations.metadata`). When several databases are configured
(storage and accounts apart, say), each database gets all the tables and its
own ``alembic_version``: the tables a database does not use stay empty, and
all are upgraded the same way.

Databases created by ``create_tables`` before migrations existed have no
``alembic_version``; the first revision creates only the tables that are
missing, so upgrading them just works.

Concurrent upgrades (several workers starting at once) take a lock first:
``pg_advisory_xact_lock`` on PostgreSQL, ``GET_LOCK`` on MySQL; on SQLite the
whole upgrade is one write transaction, which serializes them.
"""

import contextlib
import functools
import pathlib
import threading

import sqlalchemy
from sqlalchemy import exc

from syncserver.db import engines
from syncserver.db.errors import is_unavailable, translate_errors
from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.migrations.metadata import combined_metadata

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT_LOCATION = "syncserver:migrations"
VERSION_TABLE = "alembic_version"

#: Key of the PostgreSQL advisory lock and name of the MySQL lock held while upgrading.
_PG_LOCK_KEY = 0x73796E63_6D696772  # "syncmigr"
_MYSQL_LOCK_NAME = "syncserver.schema_migration"
_MYSQL_LOCK_SECONDS = 300

#: Alembic keeps the running environment in module globals: one run per process at a time.
_ALEMBIC_RUN = threading.Lock()


class SchemaNotReady(ConfigError):
    """The database lacks tables or is at an older revision than this code needs.

    ``problem`` says what is wrong without saying how to fix it.
    """

    def __init__(self, problem, fix):
        super().__init__(f"{problem}: {fix}.")
        self.problem = problem


def alembic_config(urls=(), engines=()):
    """An Alembic ``Config`` for our environment, aimed at ``urls`` or ready ``engines``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["sqluris"] = list(urls)
    config.attributes["engines"] = list(engines)
    return config


@functools.cache
def _script_directory():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision():
    """The newest revision this code knows."""
    return _script_directory().get_current_head()


def current_revision(connection):
    """The database's revision; None when it has no ``alembic_version`` (new or pre-migration)."""
    if not sqlalchemy.inspect(connection).has_table(VERSION_TABLE):
        return None
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine, revision="head"):
    """Upgrade one database to ``revision`` (under the schema lock)."""
    run_command("upgrade", alembic_config(engines=[engine]), revision)


def run_command(name, config, *args, **kwargs):
    """Run an ``alembic.command`` function, one at a time in this process."""
    from alembic import command

    with _ALEMBIC_RUN:
        return getattr(command, name)(config, *args, **kwargs)


def ensure_schema(database, unavailable_class=BackendUnavailable):
    """Bring a :class:`~syncserver.db.Database` to ``head`` unless it is there already.

    What ``*.create_tables = true`` does at start-up. Raises
    ``unavailable_class`` when the database cannot be reached.
    """
    engine = database.engine
    with translate_errors(unavailable_class):
        with engine.connect() as connection:
            if current_revision(connection) == head_revision():
                return
        upgrade(engine)


def check_schema(database, create_tables_key):
    """Refuse to start on a reachable database that is not ready for this code.

    Missing tables or an older revision raise :class:`SchemaNotReady`; an
    unreachable database passes (the server starts and answers 503 until it
    comes back).
    """
    try:
        with database.engine.connect() as connection:
            present = set(sqlalchemy.inspect(connection).get_table_names())
            revision = current_revision(connection)
    except exc.SQLAlchemyError as error:
        if is_unavailable(error):
            return
        raise
    fix = f"set {create_tables_key} = true (once is enough) or run 'syncserver-admin db upgrade'"
    head = head_revision()
    if revision is not None and revision != head:
        raise SchemaNotReady(
            f"the database schema is at revision {revision} but this version of syncserver "
            f"needs {head}", fix)
    missing = sorted(set(combined_metadata().tables) - present)
    if missing:
        raise SchemaNotReady(
            f"{create_tables_key} is false but the database has no table {', '.join(missing)}",
            fix)


@contextlib.contextmanager
def locked_transaction(engine):
    """A connection in a write transaction, holding the migration lock until after commit."""
    dialect = engine.dialect.name
    if dialect not in ("mysql", "mariadb"):
        with engines.write_transaction(engine) as connection:
            if dialect == "postgresql":
                connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _PG_LOCK_KEY})
            # SQLite: BEGIN IMMEDIATE already holds the database's write lock.
            yield connection
        return
    # MySQL: DDL commits by itself, so the lock is the session's, released after commit.
    with engine.connect() as connection:
        got = connection.execute(sqlalchemy.text("SELECT GET_LOCK(:name, :seconds)"), {
            "name": _MYSQL_LOCK_NAME, "seconds": _MYSQL_LOCK_SECONDS}).scalar()
        connection.commit()
        if got != 1:
            raise exc.OperationalError(
                "GET_LOCK", None,
                TimeoutError("another schema migration held the lock for too long"))
        try:
            with connection.begin():
                yield connection
        finally:
            connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:name)"),
                               {"name": _MYSQL_LOCK_NAME})
            connection.commit()
