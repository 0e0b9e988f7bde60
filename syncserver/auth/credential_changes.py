"""A feed of "this user's credentials changed", shared by every server process.

Why: each process remembers verified logins in its own credentials cache
(:mod:`syncserver.auth.credentials_cache`). When one process changes a
password, or disables or deletes an account, the others must stop accepting
the old credentials too. So the process that makes the change appends the
username to the ``credential_changes`` table, and every process reads the
rows it has not seen yet, at most once per ``poll_seconds`` (1 s by
default), and forgets those users' cached credentials::

    id          BIGINT primary key, autoincrement (the reading position)
    username    VARCHAR(32) NOT NULL
    changed_at  BIGINT NOT NULL, indexed (epoch seconds; old rows are pruned)

Written and read by :class:`~syncserver.auth.cached.CachedAuth`, whatever the
authentication backend behind it, right after the backend accepted the
change. Rows outlive any cached login (:func:`retention_seconds`) and are
pruned by the writers. With Redis configured the cache also checks a
per-user token on every request (:mod:`syncserver.auth.invalidation`), and
this feed only bounds what a process that cannot reach Redis may miss.
"""

import threading
import time

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, select

from syncserver.auth import AuthUnavailable

metadata = MetaData()

credential_changes = Table(
    "credential_changes", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"),
           primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False),
    Column("changed_at", BigInteger(), nullable=False, index=True),
    sqlite_autoincrement=True,
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

#: Rows younger than this are never pruned, whatever the cache lifetime.
MIN_RETENTION_SECONDS = 3600


def retention_seconds(cache_seconds):
    """How long a row must stay: longer than any credentials can stay cached."""
    return max(MIN_RETENTION_SECONDS, 2 * cache_seconds)


def record(connection, username, retention):
    """Append ``username`` to the feed on ``connection`` (inside the caller's
    transaction) and prune rows older than ``retention`` seconds."""
    now = int(time.time())
    connection.execute(credential_changes.insert().values(username=username, changed_at=now))
    connection.execute(credential_changes.delete().where(
        credential_changes.c.changed_at < now - retention))


class ChangeFeed:
    """One process's reader (and writer) of the feed in a :class:`~syncserver.db.Database`.

    Thread-safe. ``clock`` is the monotonic clock that paces the reads (tests
    pass their own).
    """

    def __init__(self, database, cache_seconds, poll_seconds=1.0, clock=time.monotonic):
        self.database = database
        self.retention = retention_seconds(cache_seconds)
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._polled_at = None
        self._last_id = None

    def record(self, username):
        """Tell every process to forget ``username``'s cached credentials.

        Raises :class:`AuthUnavailable` when the database cannot take it.
        """
        with self.database.writing(AuthUnavailable) as connection:
            record(connection, username, self.retention)

    def is_healthy(self):
        return self.database.table_answers(credential_changes.c.id)

    def poll(self, forget):
        """Call ``forget(username)`` for each change not seen yet, at most once per
        ``poll_seconds``; return those usernames.

        The first read only finds the end of the feed: nothing is cached before
        it. Other threads wait until the changes are forgotten, so none of them
        trusts a cached login the feed already revoked. Raises
        :class:`AuthUnavailable` when the database cannot be read.
        """
        if self._recently_polled(self.clock()):
            return []
        with self._lock:
            now = self.clock()
            if self._recently_polled(now):
                return []
            with self.database.reading(AuthUnavailable) as connection:
                if self._last_id is None:
                    self._last_id = connection.execute(
                        select(func.coalesce(func.max(credential_changes.c.id), 0))).scalar()
                    changes = []
                else:
                    changes = connection.execute(
                        select(credential_changes.c.id, credential_changes.c.username)
                        .where(credential_changes.c.id > self._last_id)
                        .order_by(credential_changes.c.id)).all()
            for change_id, username in changes:
                forget(username)
                self._last_id = change_id
            self._polled_at = now
        return [username for _, username in changes]

    def _recently_polled(self, now):
        polled_at = self._polled_at
        return polled_at is not None and now - polled_at < self.poll_seconds
