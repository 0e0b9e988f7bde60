"""The bundled SQL authentication backend (SQLite, MySQL/MariaDB, PostgreSQL).

One table, ``users``::

    userid         BIGINT primary key, autoincrement (never reused on SQLite)
    username       VARCHAR(32) UNIQUE NOT NULL   (case-sensitive everywhere)
    password_hash  VARCHAR(255) NOT NULL         (argon2id, or a legacy format)
    email          VARCHAR(255) NULL
    status         SMALLINT NOT NULL DEFAULT 1   (1 enabled, anything else disabled)
    sync_node      VARCHAR(255) NULL             (node assignment, used later)
    created_at     BIGINT                        (epoch seconds)

``authenticate`` is one SELECT and the (deliberately slow) password hash.
The server puts :class:`~syncserver.auth.cached.CachedAuth` in front of it,
which answers repeated good credentials from memory and makes every process
forget them when they change. Legacy hashes (``{SSHA}``, ``{SSHA-256}``,
``{SSCRYPT}``) and argon2 hashes with outdated parameters are replaced after
the next successful login.

Every database failure that means "not reachable" becomes
:class:`~syncserver.auth.AuthUnavailable` (its message never holds SQL
parameters, so no password or hash).
"""

import logging
import time

import sqlalchemy
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    exc,
    func,
    select,
)

from syncserver.auth import (
    AuthBackend,
    AuthUnavailable,
    RegistrationClosed,
    User,
    UserExists,
    UserIdTaken,
    UserNotFound,
)
from syncserver.auth.passwords import hash_password, needs_rehash, verify_password
from syncserver.auth.usernames import is_valid_username
from syncserver.db import Database
from syncserver.db.backed import DatabaseBacked
from syncserver.db.errors import is_transient_conflict
from syncserver.errors import ConfigError

logger = logging.getLogger(__name__)

STATUS_ENABLED = 1
STATUS_DISABLED = 0

MAX_EMAIL_LENGTH = 255
MAX_HASH_LENGTH = 255

metadata = MetaData()

users = Table(
    "users", metadata,
    # BIGINT on MySQL/PostgreSQL; SQLite's AUTOINCREMENT needs exactly INTEGER
    # (a 64-bit rowid alias all the same).
    Column("userid", BigInteger().with_variant(Integer(), "sqlite"),
           primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("password_hash", String(MAX_HASH_LENGTH), nullable=False),
    Column("email", String(MAX_EMAIL_LENGTH), nullable=True),
    Column("status", SmallInteger(), nullable=False, default=STATUS_ENABLED,
           server_default=str(STATUS_ENABLED)),
    Column("sync_node", String(255), nullable=True),
    Column("created_at", BigInteger(), nullable=True),
    sqlite_autoincrement=True,
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

# MySQL's "deadlock found" / "lock wait timeout": retried, never a duplicate.
_INSERT_ATTEMPTS = 3


class SQLAuth(DatabaseBacked, AuthBackend):
    """Accounts in the ``users`` table of a :class:`~syncserver.db.Database`; see the module
    docstring.

    ``password_hasher`` (a :class:`syncserver.auth.passwords.PasswordHasher`)
    is for tests that want cheap argon2 parameters; None means the defaults.
    Thread-safe: one instance serves every thread of the WSGI server.
    """

    def __init__(self, database, allow_new_users=True, password_hasher=None, *,
                 owns_database=False):
        self._use_database(database, owns_database)
        self.allow_new_users = allow_new_users
        self._hasher = password_hasher

    @classmethod
    def from_settings(cls, settings):
        """A backend with a database of its own (the server shares one: :meth:`open`)."""
        _require_sqluri(settings)
        return cls(Database(settings.sqluri, key="auth.sqluri", pool_size=settings.pool_size,
                            pool_timeout=settings.pool_timeout,
                            pool_recycle=settings.pool_recycle,
                            connect_timeout=settings.connect_timeout,
                            query_timeout=settings.query_timeout),
                   allow_new_users=settings.allow_new_users, owns_database=True)

    @classmethod
    def open(cls, settings, databases):
        _require_sqluri(settings)
        return cls(databases.database(settings.sqluri, "auth.sqluri", settings.create_tables),
                   allow_new_users=settings.allow_new_users)

    # --- reads --------------------------------------------------------------

    def is_healthy(self):
        return self.database.table_answers(users.c.userid)

    def get_user(self, username):
        if not is_valid_username(username):
            return None
        row = self._fetch(username)
        return None if row is None else _user(row)

    def get_password_hash(self, username):
        """The stored hash (for ``syncserver-admin export``), or None for an unknown user."""
        if not is_valid_username(username):
            return None
        row = self._fetch(username)
        return None if row is None else row.password_hash

    def list_users(self, after=None, limit=100):
        """One indexed range read of ``users`` by username (the unique index)."""
        query = select(*_USER_COLUMNS).order_by(users.c.username).limit(max(int(limit), 0))
        if after is not None:
            query = query.where(users.c.username > after)
        with self.database.reading(AuthUnavailable) as connection:
            return [_user(row) for row in connection.execute(query)]

    def count_users(self):
        with self.database.reading(AuthUnavailable) as connection:
            return int(connection.execute(
                select(func.count()).select_from(users)).scalar())

    def _fetch(self, username):
        query = select(*_USER_COLUMNS, users.c.password_hash).where(users.c.username == username)
        with self.database.reading(AuthUnavailable) as connection:
            return connection.execute(query).first()

    def authenticate(self, username, password):
        if not is_valid_username(username) or not isinstance(password, str):
            return None
        query = select(users.c.userid, users.c.password_hash, users.c.status,
                       users.c.email).where(users.c.username == username)
        with self.database.reading(AuthUnavailable) as connection:
            row = connection.execute(query).first()
        if row is None or row.status != STATUS_ENABLED:
            return None
        stored = row.password_hash
        if not verify_password(password, stored, self._hasher):
            return None
        if needs_rehash(stored, self._hasher) and not self._rehash(row.userid, password, stored):
            # The hash changed while we checked it: another login upgraded it (the
            # password still verifies), or the password was changed (it no longer does).
            current = self.get_password_hash(username)
            if current is None or not verify_password(password, current, self._hasher):
                return None
        return User(user_id=row.userid, username=username, email=row.email, enabled=True)

    def _rehash(self, userid, password, old_hash):
        """Store a current hash of the verified ``password``.

        Returns False when the stored hash was no longer ``old_hash`` (the
        password changed meanwhile, and is never overwritten), True otherwise.
        Best effort: a database failure is logged, the login still succeeds.
        """
        new_hash = hash_password(password, self._hasher)
        statement = (users.update()
                     .where(users.c.userid == userid, users.c.password_hash == old_hash)
                     .values(password_hash=new_hash))
        try:
            with self.database.writing(AuthUnavailable) as connection:
                changed = connection.execute(statement).rowcount
        except AuthUnavailable as error:
            logger.warning("could not upgrade the password hash of user id %s: %s", userid, error)
            return True
        return changed == 1

    # --- writes -------------------------------------------------------------

    def create_user(self, username, password, email):
        if not self.allow_new_users:
            raise RegistrationClosed("new accounts are not allowed on this server "
                                     "(auth.allow_new_users is false)")
        _check_username(username)
        _check_email(email)
        if not isinstance(password, str) or not password:
            raise ValueError("a password is required")
        password_hash = hash_password(password, self._hasher)
        return self._insert(username, password_hash, email, None, STATUS_ENABLED)

    def import_user(self, username, password_hash, email=None, userid=None, enabled=True):
        """Add an account with an already-hashed password (migrations).

        ``password_hash`` is stored as it is (a legacy ``{SSHA}``,
        ``{SSHA-256}`` or ``{SSCRYPT}`` value keeps working and is upgraded at
        the first login). ``userid`` keeps the account's id from the old
        database, so its stored data stays attached; None assigns a new one.
        Works whatever ``allow_new_users`` says. Raises :class:`UserExists`,
        or :class:`ValueError` when ``userid`` belongs to another account.
        """
        _check_username(username)
        _check_email(email)
        if not isinstance(password_hash, str) or not password_hash:
            raise ValueError("a password hash is required")
        if len(password_hash) > MAX_HASH_LENGTH:
            raise ValueError(f"the password hash is longer than {MAX_HASH_LENGTH} characters")
        if userid is not None:
            userid = int(userid)
            if userid < 1:
                raise ValueError("userid must be a positive integer")
        status = STATUS_ENABLED if enabled else STATUS_DISABLED
        return self._insert(username, password_hash, email, userid, status)

    def _insert(self, username, password_hash, email, userid, status):
        values = dict(username=username, password_hash=password_hash, email=email,
                      status=status, created_at=int(time.time()))
        if userid is not None:
            values["userid"] = userid
        for attempt in range(_INSERT_ATTEMPTS):
            try:
                with self.database.writing(AuthUnavailable) as connection:
                    result = connection.execute(users.insert().values(**values))
                    new_id = userid if userid is not None else result.inserted_primary_key[0]
                    if userid is not None:
                        self._advance_sequence(connection, userid)
                break
            except exc.IntegrityError:
                if self._fetch(username) is not None:
                    raise UserExists(f"the username {username!r} is taken") from None
                if userid is not None:
                    raise UserIdTaken(
                        f"user id {userid} already belongs to another account") from None
                raise
            except AuthUnavailable as error:
                # A MySQL deadlock between concurrent inserts is not an outage: retry.
                if not is_transient_conflict(error.__cause__) or attempt == _INSERT_ATTEMPTS - 1:
                    raise
        return User(user_id=int(new_id), username=username, email=email,
                    enabled=status == STATUS_ENABLED, created_at=values["created_at"])

    def _advance_sequence(self, connection, userid):
        """After an explicit userid on PostgreSQL, keep the serial sequence ahead of it.

        MySQL and SQLite move their counters past explicit ids by themselves.
        The sequence only ever moves forward, so concurrent inserts are safe.
        """
        if connection.dialect.name != "postgresql":
            return
        connection.execute(sqlalchemy.text(
            "SELECT CASE WHEN s.n < :userid THEN setval(CAST(:seq AS regclass), :userid) "
            "ELSE s.n END FROM (SELECT nextval(CAST(:seq AS regclass)) AS n) AS s"
        ), {"userid": userid, "seq": self._sequence_name(connection)})

    @staticmethod
    def _sequence_name(connection):
        return connection.execute(sqlalchemy.text(
            "SELECT pg_get_serial_sequence('users', 'userid')")).scalar_one()

    def _update(self, username, **values):
        if not is_valid_username(username):
            raise UserNotFound(f"no account named {username!r}")
        statement = users.update().where(users.c.username == username).values(**values)
        with self.database.writing(AuthUnavailable) as connection:
            changed = connection.execute(statement).rowcount
        if changed == 0:
            raise UserNotFound(f"no account named {username!r}")

    def set_password(self, username, new_password):
        if not isinstance(new_password, str) or not new_password:
            raise ValueError("a password is required")
        password_hash = hash_password(new_password, self._hasher)
        self._update(username, password_hash=password_hash)

    def set_email(self, username, email):
        _check_email(email)
        self._update(username, email=email)

    def set_enabled(self, username, enabled):
        self._update(username, status=STATUS_ENABLED if enabled else STATUS_DISABLED)

    def delete_user(self, username):
        if not is_valid_username(username):
            return False
        statement = users.delete().where(users.c.username == username)
        with self.database.writing(AuthUnavailable) as connection:
            return connection.execute(statement).rowcount > 0


_USER_COLUMNS = (users.c.userid, users.c.username, users.c.email, users.c.status,
                 users.c.created_at)


def _user(row):
    return User(user_id=row.userid, username=row.username, email=row.email,
                enabled=row.status == STATUS_ENABLED, created_at=row.created_at)


def _require_sqluri(settings):
    if not settings.sqluri:
        raise ConfigError(
            "auth.sqluri is required by the SQL authentication backend "
            "(or set storage.sqluri, which it defaults to).")


def _check_username(username):
    if not is_valid_username(username):
        raise ValueError("a username is 1 to 32 characters of [a-zA-Z0-9._-]")


def _check_email(email):
    if email is not None and (not isinstance(email, str) or len(email) > MAX_EMAIL_LENGTH):
        raise ValueError(
            f"the e-mail address must be a string of at most {MAX_EMAIL_LENGTH} characters")

