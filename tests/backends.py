"""Backends built for tests the way the server builds them: shared databases, schema at head.

Backends never create tables themselves (the composition root does, with
the migrations); these helpers do the same for tests that use one backend
alone.
"""

from syncserver import app, migrations, plugins
from syncserver.accounts.reset_codes import ResetCodeStore
from syncserver.auth.cached import CachedAuth
from syncserver.auth.credential_changes import ChangeFeed
from syncserver.auth.credentials_cache import CredentialsCache
from syncserver.auth.sql import SQLAuth
from syncserver.db import Database, DatabaseRegistry
from syncserver.nodes.sql import SQLNodes
from syncserver.storage.sql import SQLStorage
from syncserver.throttle.sql_store import SQLCounterStore


def prepared_database(url, **options):
    """A :class:`Database` on ``url`` whose schema is at the newest revision."""
    database = Database(url, **options)
    migrations.ensure_schema(database)
    return database


def sql_storage(url, **options):
    """A :class:`SQLStorage` on a database of its own, tables created."""
    return SQLStorage(prepared_database(url, **options), owns_database=True)


def sql_auth(url, password_hasher=None, allow_new_users=True, **options):
    """A bare :class:`SQLAuth` (no login cache) on a database of its own, tables created."""
    return SQLAuth(prepared_database(url, **options), allow_new_users=allow_new_users,
                   password_hasher=password_hasher, owns_database=True)


def cached_sql_auth(url, password_hasher=None, cache_seconds=300, poll_seconds=1.0,
                    clock=None, **options):
    """:class:`SQLAuth` behind :class:`CachedAuth` with the SQL change feed, as the server runs it."""
    backend = sql_auth(url, password_hasher=password_hasher, **options)
    feed_options = {"poll_seconds": poll_seconds}
    if clock is not None:
        feed_options["clock"] = clock
    feed = ChangeFeed(backend.database, cache_seconds, **feed_options)
    return CachedAuth(backend, CredentialsCache(cache_seconds), feed=feed)


def sql_nodes(url, **options):
    return SQLNodes(prepared_database(url, **options), owns_database=True)


def reset_code_store(url, lifetime_seconds=21600, clock=None):
    options = {"clock": clock} if clock is not None else {}
    return ResetCodeStore(prepared_database(url), lifetime_seconds, owns_database=True,
                          **options)


def counter_store(url):
    return SQLCounterStore(prepared_database(url), owns_database=True)


def open_from_settings(interface, section_settings, cached=False):
    """``section_settings.backend`` built by the server's rules (databases shared and
    prepared); with ``cached``, behind the server's login cache. Its ``close()`` also
    closes the databases it opened."""
    databases = DatabaseRegistry()
    backend = plugins.open_backend(interface, section_settings.backend, section_settings,
                                   databases)
    if cached:
        backend = app.cached_auth(backend, section_settings, databases)
    try:
        app.prepare_schemas(databases)
    except BaseException:
        backend.close()
        databases.close()
        raise
    close_backend = backend.close

    def close():
        close_backend()
        databases.close()

    backend.close = close
    return backend
