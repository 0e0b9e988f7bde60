"""Stable numeric user ids for directory accounts, kept in SQL.

Why: stored records are keyed by an integer user id, and a directory entry
has none unless it carries a numeric attribute such as ``uidNumber``. So the
first time a directory user is seen, the username gets the next id of the
``ldap_users`` table and keeps it for good::

    userid      BIGINT primary key, autoincrement (never reused on SQLite)
    username    VARCHAR(32) UNIQUE NOT NULL (the Sync username, case-sensitive)
    created_at  BIGINT (epoch seconds)

Two processes seeing the same new user at once both try to insert; the
unique key lets one win and the other reads the winner's id. Ids are
remembered per process: they never change while the row exists, and only
:meth:`DirectoryIdMap.forget` (an account deleted through this server)
removes a row.

The table lives on its own :data:`metadata` so a migration tool can pick it
up alone.
"""

import threading
import time

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, exc, select

from syncserver.auth import AuthUnavailable
from syncserver.db.errors import is_transient_conflict

metadata = MetaData()

ldap_users = Table(
    "ldap_users", metadata,
    Column("userid", BigInteger().with_variant(Integer(), "sqlite"),
           primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("created_at", BigInteger(), nullable=True),
    sqlite_autoincrement=True,
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

#: Ids remembered per process before the memory is emptied (bounded, not LRU: ids are cheap).
_MAX_REMEMBERED = 100_000
# MySQL "deadlock found" / "lock wait timeout" between concurrent first logins: retried.
_ATTEMPTS = 3


class DirectoryIdMap:
    """Username -> stable integer id, backed by the ``ldap_users`` table of a
    :class:`~syncserver.db.Database`."""

    def __init__(self, database):
        self.database = database
        self._lock = threading.Lock()
        self._known = {}

    def is_healthy(self):
        return self.database.table_answers(ldap_users.c.userid)

    def user_id(self, username):
        """The id of ``username``, assigned now if it has none. Raises :class:`AuthUnavailable`."""
        with self._lock:
            known = self._known.get(username)
        if known is not None:
            return known
        userid = self._lookup(username)
        for attempt in range(_ATTEMPTS):
            if userid is not None:
                break
            try:
                with self.database.writing(AuthUnavailable) as connection:
                    userid = connection.execute(ldap_users.insert().values(
                        username=username, created_at=int(time.time()),
                    )).inserted_primary_key[0]
            except exc.IntegrityError:
                # Another process inserted it first: its id is the one.
                userid = self._lookup(username)
            except AuthUnavailable as error:
                if not is_transient_conflict(error.__cause__) or attempt == _ATTEMPTS - 1:
                    raise
                userid = self._lookup(username)
        if userid is None:
            raise AuthUnavailable(f"could not assign a user id to {username!r}")
        userid = int(userid)
        with self._lock:
            if len(self._known) >= _MAX_REMEMBERED:
                self._known.clear()
            self._known[username] = userid
        return userid

    def _lookup(self, username):
        query = select(ldap_users.c.userid).where(ldap_users.c.username == username)
        with self.database.reading(AuthUnavailable) as connection:
            return connection.execute(query).scalar()

    def forget(self, username):
        """Remove the username's id (its account was deleted): a new account gets a new id."""
        with self._lock:
            self._known.pop(username, None)
        with self.database.writing(AuthUnavailable) as connection:
            connection.execute(ldap_users.delete().where(ldap_users.c.username == username))


