"""Password-reset codes, kept in SQL whatever the authentication backend is.

One table, ``reset_codes``, on its own :data:`metadata` (so a migration can
create it next to the accounts or in another database)::

    userid      BIGINT primary key   (the account's user_id: a code never
                                      survives into a re-created account)
    code_hash   CHAR(64) NOT NULL    (sha256 hex of the code, never the code)
    expires_at  BIGINT NOT NULL      (epoch seconds)

Codes look like the reference's ``XXXX-XXXX-XXXX-XXXX`` (about 82 bits from
:mod:`secrets`), so a plain sha256 is enough to make a stolen table useless.
A new code replaces the previous one; a code is used at most once (the row
is deleted by the request that redeems it, so two racing requests cannot
both succeed); an expired code never verifies and is deleted when seen.
"""

import hashlib
import hmac
import re
import secrets
import time

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, select

from syncserver.auth import AuthUnavailable
from syncserver.db import Database
from syncserver.db.backed import DatabaseBacked
from syncserver.errors import ConfigError

metadata = MetaData()

reset_codes = Table(
    "reset_codes", metadata,
    Column("userid", BigInteger().with_variant(Integer(), "sqlite"),
           primary_key=True, autoincrement=False),
    Column("code_hash", String(64), nullable=False),
    Column("expires_at", BigInteger(), nullable=False, index=True),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CODE_RE = re.compile(r"[A-Z0-9]{4}(?:-[A-Z0-9]{4}){3}")


def normalize_code(code):
    """The code as stored, or None when ``code`` cannot be one (typed codes may vary in case)."""
    if not isinstance(code, str):
        return None
    code = code.strip().upper()
    return code if CODE_RE.fullmatch(code) else None


def _hash(code):
    return hashlib.sha256(code.encode("ascii")).hexdigest()


class ResetCodeStore(DatabaseBacked):
    """Issues, redeems and clears reset codes in the ``reset_codes`` table.

    Every method may raise :class:`~syncserver.auth.AuthUnavailable` when the
    database is down. Thread-safe. ``clock`` (epoch seconds) is for tests.
    """

    def __init__(self, database, lifetime_seconds=21600, clock=time.time, *,
                 owns_database=False):
        self._use_database(database, owns_database)
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings, databases=None):
        """The store of :class:`syncserver.settings.ResetSettings`, on ``reset.sqluri``:
        shared through ``databases``, else on a database of its own."""
        if not settings.sqluri:
            raise ConfigError("reset.sqluri is required for password reset "
                              "(it defaults to auth.sqluri, then storage.sqluri).")
        if databases is not None:
            return cls(databases.database(settings.sqluri, "reset.sqluri",
                                          settings.create_tables),
                       settings.code_lifetime_seconds)
        return cls(Database(settings.sqluri, key="reset.sqluri", pool_size=2),
                   settings.code_lifetime_seconds, owns_database=True)

    def is_healthy(self):
        """True when the ``reset_codes`` table can be read (the heartbeat's check)."""
        return self.database.table_answers(reset_codes.c.userid)

    def issue(self, user_id):
        """Store a fresh code for ``user_id`` (replacing any older one) and return it."""
        code = "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(4))
                        for _ in range(4))
        now = int(self._clock())
        with self.database.writing(AuthUnavailable) as connection:
            connection.execute(reset_codes.delete().where(
                (reset_codes.c.userid == user_id) | (reset_codes.c.expires_at <= now)))
            connection.execute(reset_codes.insert().values(
                userid=user_id, code_hash=_hash(code),
                expires_at=now + self.lifetime_seconds))
        return code

    def redeem(self, user_id, code):
        """True, and the code is gone, if ``code`` is ``user_id``'s unexpired code; else False."""
        code = normalize_code(code)
        if code is None:
            return False
        now = int(self._clock())
        with self.database.reading(AuthUnavailable) as connection:
            row = connection.execute(
                select(reset_codes.c.code_hash, reset_codes.c.expires_at)
                .where(reset_codes.c.userid == user_id)).first()
        if row is None:
            return False
        if row.expires_at <= now:
            self.clear(user_id)
            return False
        if not hmac.compare_digest(row.code_hash.encode("ascii"), _hash(code).encode("ascii")):
            return False
        # Only the request whose DELETE removes the row wins a race between two.
        with self.database.writing(AuthUnavailable) as connection:
            deleted = connection.execute(reset_codes.delete().where(
                reset_codes.c.userid == user_id,
                reset_codes.c.code_hash == row.code_hash,
                reset_codes.c.expires_at > now)).rowcount
        return deleted == 1

    def has_code(self, user_id):
        """True when ``user_id`` holds an unexpired code (for tests and the admin tool)."""
        now = int(self._clock())
        with self.database.reading(AuthUnavailable) as connection:
            row = connection.execute(select(reset_codes.c.userid).where(
                reset_codes.c.userid == user_id, reset_codes.c.expires_at > now)).first()
        return row is not None

    def clear(self, user_id):
        """Forget ``user_id``'s code, if any; return True if there was one."""
        with self.database.writing(AuthUnavailable) as connection:
            return connection.execute(
                reset_codes.delete().where(reset_codes.c.userid == user_id)).rowcount > 0
