"""The tables of the SQL storage backend (SQLAlchemy Core) and its per-dialect inserts.

Nothing here touches a database: :func:`create_schema` is called only when
``storage.create_tables`` is on.
"""

from sqlalchemy import (BigInteger, Column, Index, Integer, MetaData, String, Table, Text,
                        TypeDecorator, exc, select)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from syncserver.storage import StorageError

#: InnoDB for row locks; a binary collation so that ids "abc" and "ABC" differ,
#: as they do on SQLite and PostgreSQL.
_MYSQL_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
                  "mysql_collate": "utf8mb4_bin"}

#: The ids Mozilla's servers gave the standard collections (``fixed_collections``).
FIXED_COLLECTIONS = {
    "clients": 1, "crypto": 2, "forms": 3, "history": 4, "keys": 5, "meta": 6,
    "bookmarks": 7, "prefs": 8, "tabs": 9, "passwords": 10, "addons": 11,
}
#: Collections created by clients get ids from here up.
FIRST_CUSTOM_COLLECTION_ID = 100


class _ExactText(TypeDecorator):
    """Text compared byte for byte, for ids on MySQL.

    ``utf8mb4_bin`` still ignores trailing spaces (``"a"`` = ``"a "``), so ids
    are VARBINARY there; values go in and come out as ``str``.
    """

    impl = mysql.VARBINARY
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.encode("utf-8") if isinstance(value, str) else value

    def process_result_value(self, value, dialect):
        return value.decode("utf-8") if value is not None else None


def _item_id_type():
    return String(64).with_variant(_ExactText(64), "mysql", "mariadb")


metadata = MetaData()

#: Global name <-> id map, shared by every user; ids never change once given.
collections_table = Table(
    "collections", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(32), nullable=False, unique=True),
    **_MYSQL_OPTIONS)

#: Per-user collection timestamps: info/collections and X-If-Unmodified-Since.
user_collections_table = Table(
    "user_collections", metadata,
    Column("userid", BigInteger, primary_key=True, autoincrement=False),
    Column("collection", Integer, primary_key=True, autoincrement=False),
    Column("modified", BigInteger, nullable=False),
    **_MYSQL_OPTIONS)

#: One row per user: the last stamp handed out (timestamps never go back, even
#: after delete_storage) and the row every write locks.
storage_users_table = Table(
    "storage_users", metadata,
    Column("userid", BigInteger, primary_key=True, autoincrement=False),
    Column("last_modified", BigInteger, nullable=False),
    **_MYSQL_OPTIONS)

items_table = Table(
    "items", metadata,
    Column("userid", BigInteger, primary_key=True, autoincrement=False),
    Column("collection", Integer, primary_key=True, autoincrement=False),
    Column("id", _item_id_type(), primary_key=True),
    Column("sortindex", Integer),
    Column("parentid", _item_id_type()),
    Column("predecessorid", _item_id_type()),
    Column("modified", BigInteger),  # centiseconds; NULL until a payload is written
    # Payloads reach 256 KiB; MySQL's TEXT stops at 64 KiB.
    Column("payload", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")),
    Column("payload_size", Integer, nullable=False, server_default="0"),  # UTF-8 bytes
    Column("ttl", BigInteger, nullable=False),  # absolute expiry, epoch seconds
    # id completes the sort keys (ties broken for paging), so ORDER BY ... LIMIT
    # walks the index and stops early instead of sorting.
    Index("items_modified_idx", "userid", "collection", "modified", "id"),
    Index("items_sortindex_idx", "userid", "collection", "sortindex", "id"),
    # Live-item counts and usage per user read only this index. ttl is last on
    # purpose: as a third column SQLite would range-scan it for every GET and
    # sort the whole collection instead of walking the modified/sortindex index.
    Index("items_usage_idx", "userid", "collection", "payload_size", "ttl"),
    Index("items_expiry_idx", "ttl"),
    **_MYSQL_OPTIONS)


def insert_ignore(dialect_name, table):
    """An INSERT that silently skips rows whose key already exists."""
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect_name in ("mysql", "mariadb"):
        return mysql.insert(table).prefix_with("IGNORE")
    raise NotImplementedError(f"the sql storage backend does not support {dialect_name!r}")


def create_user_row_locked(dialect):
    """Create the user's row if missing, leaving it locked by this transaction.

    A plain insert-if-absent is not enough: MySQL's INSERT IGNORE leaves racing
    first writers holding shared locks that they then both try to upgrade (a
    deadlock), and on PostgreSQL the row found by ON CONFLICT DO NOTHING may be
    deleted before we lock it. A no-op update of the existing row locks it.
    """
    users = storage_users_table.c
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(storage_users_table).on_duplicate_key_update(
            last_modified=users.last_modified)
    if dialect == "postgresql":
        return postgresql.insert(storage_users_table).on_conflict_do_update(
            index_elements=[users.userid], set_={"last_modified": users.last_modified})
    return insert_ignore(dialect, storage_users_table)  # SQLite: writers are serialized


def create_schema(engine, attempts=3):
    """Create missing tables and seed the fixed collections; safe to run concurrently.

    Two processes starting together may both find a table missing; the loser's
    CREATE fails, and the retry then finds everything in place.
    """
    for attempt in range(attempts):
        try:
            with engine.begin() as connection:
                metadata.create_all(connection, checkfirst=True)
            break
        except (exc.ProgrammingError, exc.IntegrityError, exc.OperationalError):
            if attempt == attempts - 1:
                raise
    seed = insert_ignore(engine.dialect.name, collections_table)
    with engine.begin() as connection:
        connection.execute(seed, [{"id": cid, "name": name}
                                  for name, cid in FIXED_COLLECTIONS.items()])
        stored = dict(connection.execute(
            select(collections_table.c.name, collections_table.c.id).where(
                collections_table.c.name.in_(list(FIXED_COLLECTIONS)))).all())
    if stored != FIXED_COLLECTIONS:
        raise StorageError(
            "the collections table maps the standard collection names to unexpected ids: "
            f"{sorted(stored.items())}")
