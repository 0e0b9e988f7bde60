"""Failure counters in a SQL table (SQLite, MySQL/MariaDB, PostgreSQL).

One table, ``login_failures``, on its own :data:`metadata`::

    counter_key  VARCHAR(191) primary key  ("login-pair:alice|203.0.113.7")
    hits         INTEGER NOT NULL
    updated_at   BIGINT NOT NULL            (epoch seconds of the last hit)
    expires_at   BIGINT NOT NULL, indexed   (updated_at + the scope's window)

An increment is one atomic upsert (``ON CONFLICT`` on SQLite and
PostgreSQL, ``ON DUPLICATE KEY`` on MySQL) that restarts an expired counter
from 1, then a read of the row in the same transaction. Expired rows are
deleted by the process that records a failure, at most once a minute.
Keys longer than the column are stored as their SHA-256.
"""

import hashlib
import time

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, case, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from syncserver.db import Database
from syncserver.db.backed import DatabaseBacked
from syncserver.errors import ConfigError
from syncserver.throttle import Counter, CounterStore, ThrottleStoreUnavailable

#: 191 characters of utf8mb4 fit MySQL's 767-byte index limit on old row formats.
MAX_KEY_LENGTH = 191
PURGE_INTERVAL_SECONDS = 60

metadata = MetaData()

login_failures = Table(
    "login_failures", metadata,
    Column("counter_key", String(MAX_KEY_LENGTH), primary_key=True),
    Column("hits", Integer(), nullable=False),
    Column("updated_at", BigInteger(), nullable=False),
    Column("expires_at", BigInteger(), nullable=False, index=True),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class SQLCounterStore(DatabaseBacked, CounterStore):
    """:class:`~syncserver.throttle.CounterStore` on the ``login_failures`` table."""

    def __init__(self, database, *, owns_database=False):
        self._use_database(database, owns_database)
        self._purged_at = 0.0

    @classmethod
    def from_settings(cls, settings, databases=None):
        """The store on ``throttle.sqluri``: shared through ``databases``, else its own."""
        if not settings.sqluri:
            raise ConfigError(
                "throttle.sqluri (or auth.sqluri) is required to count failed logins in the "
                "database; set throttle.redis_url to use Redis, or throttle.enabled = false.")
        if databases is not None:
            return cls(databases.database(settings.sqluri, "throttle.sqluri",
                                          settings.create_tables))
        return cls(Database(settings.sqluri, key="throttle.sqluri", pool_size=2,
                            pool_timeout=10), owns_database=True)

    def increment(self, key, now, lifetime):
        key = _column_key(key)
        table = login_failures
        values = {"counter_key": key, "hits": 1, "updated_at": now, "expires_at": now + lifetime}
        # Order matters on MySQL, whose assignments see the ones before them.
        updates = [
            ("hits", case((table.c.expires_at <= now, 1), else_=table.c.hits + 1)),
            ("updated_at", now),
            ("expires_at", now + lifetime),
        ]
        with self.database.writing(ThrottleStoreUnavailable) as connection:
            dialect = connection.dialect.name
            if dialect in ("mysql", "mariadb"):
                statement = mysql.insert(table).values(values).on_duplicate_key_update(updates)
            else:
                statement = _INSERTS[dialect](table).values(values).on_conflict_do_update(
                    index_elements=[table.c.counter_key], set_=dict(updates))
            connection.execute(statement)
            row = connection.execute(
                select(table.c.hits, table.c.updated_at).where(table.c.counter_key == key)
            ).one()
            self._purge(connection, now)
        return Counter(hits=row.hits, updated_at=row.updated_at)

    def read(self, keys, now):
        column_keys = {_column_key(key): key for key in keys}
        table = login_failures
        query = (select(table.c.counter_key, table.c.hits, table.c.updated_at)
                 .where(table.c.counter_key.in_(list(column_keys)), table.c.expires_at > now))
        with self.database.reading(ThrottleStoreUnavailable) as connection:
            rows = connection.execute(query).all()
        return {column_keys[row.counter_key]: Counter(hits=row.hits, updated_at=row.updated_at)
                for row in rows}

    def delete(self, key):
        statement = login_failures.delete().where(login_failures.c.counter_key == _column_key(key))
        with self.database.writing(ThrottleStoreUnavailable) as connection:
            connection.execute(statement)

    def _purge(self, connection, now):
        """Delete expired rows, at most once per :data:`PURGE_INTERVAL_SECONDS` per process."""
        if time.monotonic() - self._purged_at < PURGE_INTERVAL_SECONDS:
            return
        self._purged_at = time.monotonic()
        connection.execute(login_failures.delete().where(login_failures.c.expires_at <= now))



def _column_key(key):
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
