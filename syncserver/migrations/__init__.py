"""Schema migrations (Alembic): what creates and upgrades the SQL databases.

The migration environment (``env.py``, ``versions/``) ships inside the
package; ``alembic.ini`` at the top of the source tree and
``syncserver-admin db upgrade`` both use it, and so does start-up with
``storage.create_tables`` / ``auth.create_tables``: those run
:func:`ensure_schema`, the same migrations, instead of a separate
``create_all``.

One revision history covers every table of every SQL backend
(:mod:`syncserver.sql_metadata`). When storage and authentication use two
databases, each database gets all the tables and its own ``alembic_version``:
the tables a database does not use stay empty, and both are upgraded the
same way.

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

from syncserver import sqldb
from syncserver.errors import ConfigError

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


def database_urls(settings):
    """The distinct database URLs a :class:`~syncserver.settings.Settings` names, storage first."""
    urls = []
    for url in (settings.storage.sqluri, settings.auth.sqluri):
        if url and url not in urls:
            urls.append(url)
    return urls


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


def ensure_schema(engine, unavailable_class):
    """Bring the database to ``head`` unless it is there already (``create_tables = true``).

    Raises ``unavailable_class`` when the database cannot be reached.
    """
    with sqldb.translate_errors(unavailable_class):
        with engine.connect() as connection:
            if current_revision(connection) == head_revision():
                return
        upgrade(engine)


def check_schema(engine, create_tables_key):
    """Refuse to start on a reachable database that is not ready for this code.

    Missing tables or an older revision raise :class:`SchemaNotReady`; an
    unreachable database passes (the server starts and answers 503 until it
    comes back).
    """
    from syncserver.sql_metadata import combined_metadata

    try:
        with engine.connect() as connection:
            present = set(sqlalchemy.inspect(connection).get_table_names())
            revision = current_revision(connection)
    except exc.SQLAlchemyError as error:
        if sqldb.is_unavailable(error):
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


def require_schema(backend, create_tables_key):
    """:func:`check_schema` of ``backend.engine`` for a backend built with create_tables off.

    A backend that may not start is closed before the error propagates.
    """
    try:
        check_schema(backend.engine, create_tables_key)
    except ConfigError:
        backend.close()
        raise


@contextlib.contextmanager
def locked_transaction(engine):
    """A connection in a write transaction, holding the migration lock until after commit."""
    dialect = engine.dialect.name
    if dialect not in ("mysql", "mariadb"):
        with sqldb.write_transaction(engine) as connection:
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
