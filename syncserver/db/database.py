"""One SQL database as every backend on it sees it: engine, pool, transactions, errors, health.

The composition root (:mod:`syncserver.composition`) builds one
:class:`Database` per distinct SQL URL and hands it to every SQL backend
configured with that URL (storage, accounts, nodes, reset codes, throttle
counters), so backends on one database share one connection pool. Backends
never build engines themselves and never touch the schema: the composition
root brings the schema up to date (or checks it) with
:mod:`syncserver.migrations` before the server serves.
"""

import contextlib
import logging

import sqlalchemy
from sqlalchemy import exc

from syncserver.db import engines
from syncserver.db.errors import is_deadlock, is_transient_conflict, translate_errors
from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.extras import missing_module

logger = logging.getLogger(__name__)


class Database:
    """A SQL database reached through one SQLAlchemy engine and its pool. Thread-safe.

    ``key`` names the setting the URL came from (``storage.sqluri``), for
    error messages. A URL that cannot be used (bad syntax, driver not
    installed) raises :class:`~syncserver.errors.ConfigError` naming it.
    """

    def __init__(self, url, *, key="sqluri", pool_size=10, pool_timeout=30, pool_recycle=3600,
                 connect_timeout=10, query_timeout=30):
        self.url = url
        self.key = key
        try:
            self.engine = engines.create_engine(
                url, pool_size=pool_size, pool_timeout=pool_timeout, pool_recycle=pool_recycle,
                connect_timeout=connect_timeout, query_timeout=query_timeout)
        except ImportError as error:
            what, install = missing_module(error)
            raise ConfigError(f"{key} needs {what}, which is not installed: {install}.") from None
        except exc.ArgumentError as error:
            raise ConfigError(f"{key} is not a usable database URL: {error}") from None

    def __repr__(self):
        return f"<Database {self.display_url}>"

    @property
    def dialect(self):
        """``sqlite``, ``mysql`` (MariaDB too) or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def display_url(self):
        """The URL with its password hidden, fit for logs and messages."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def reading(self, unavailable=BackendUnavailable):
        """A connection for reads (no write lock on SQLite); outages raise ``unavailable``."""
        with translate_errors(unavailable), engines.read_connection(self.engine) as connection:
            yield connection

    @contextlib.contextmanager
    def writing(self, unavailable=BackendUnavailable):
        """A write transaction, committed on success and rolled back on any error.

        On SQLite writers queue for the database's write lock. Outages raise
        ``unavailable``; other errors (integrity, a bug) propagate unchanged.
        """
        with translate_errors(unavailable), engines.write_transaction(self.engine) as connection:
            yield connection

    def write_retrying(self, work, unavailable=BackendUnavailable, attempts=5, what="write"):
        """Run ``work(connection)`` in one write transaction; retry lock conflicts.

        A deadlock, lock wait timeout or serialization failure rolls the
        transaction back and runs ``work`` again, up to ``attempts`` times
        (then it raises ``unavailable``); outages raise ``unavailable`` at
        once. ``what`` names the work in the INFO line of each retry.
        """
        for attempt in self.attempts(unavailable, is_transient_conflict, attempts, what):
            with attempt, self.writing(unavailable) as connection:
                return work(connection)

    @staticmethod
    def attempts(unavailable=BackendUnavailable, retry_on=is_deadlock, attempts=3,
                 what="write"):
        """Tries of a block, for writers whose transaction is a ``with`` block::

            for attempt in database.attempts(StorageUnavailable):
                with attempt, database.writing(StorageUnavailable) as connection:
                    ...

        The loop ends after the first try that raises nothing. An
        ``unavailable`` error caused by a conflict ``retry_on`` accepts (by
        default a deadlock, which the database resolved by rolling this
        transaction back) is logged at INFO and the block runs again, up to
        ``attempts`` times; the last try's error, and any other, propagate.
        """
        for number in range(1, attempts + 1):
            attempt = _Attempt(unavailable, retry_on if number < attempts else None, what)
            yield attempt
            if attempt.succeeded:
                return

    def translating(self, unavailable=BackendUnavailable):
        """Outages inside the block raise ``unavailable`` (for work outside these two helpers)."""
        return translate_errors(unavailable)

    def is_healthy(self):
        """True when the database answers a trivial query now; never raises."""
        try:
            with self.reading() as connection:
                connection.execute(sqlalchemy.text("SELECT 1")).scalar()
            return True
        except (BackendUnavailable, exc.SQLAlchemyError):
            return False

    def table_answers(self, column):
        """True when a row (or none) of ``column``'s table can be read now; never raises.

        A backend's heartbeat check: the database answers *and* has its table.
        """
        try:
            with self.reading() as connection:
                connection.execute(sqlalchemy.select(column).limit(1)).first()
            return True
        except (BackendUnavailable, exc.SQLAlchemyError):
            return False

    def close(self):
        """Close every pooled connection (the object can still be used: it reconnects)."""
        engines.dispose(self.engine)


class _Attempt:
    """One try of :meth:`Database.attempts`: swallows a conflict worth another try."""

    def __init__(self, unavailable, retry_on, what):
        self._unavailable = unavailable
        self._retry_on = retry_on  # None: the last try
        self._what = what
        self.succeeded = False

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            self.succeeded = True
            return False
        if (self._retry_on is None or not isinstance(error, self._unavailable)
                or not self._retry_on(error.__cause__)):
            return False
        logger.info("%s retried after %s", self._what, error)
        return True
