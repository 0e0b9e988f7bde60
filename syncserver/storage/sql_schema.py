"""What the SQL storage backend's SQL is: tables, indexes and the statements run on them.

:mod:`syncserver.storage.sql` decides when each statement runs and in which
transaction. Statements are SQLAlchemy Core, built once at import with a bind
parameter for every value, so the compiled cache serves every request; the
shapes that vary (filters, sorts, updated columns) are built once per shape.
Nothing here touches a database; :mod:`syncserver.migrations` creates the
tables (and seeds :data:`FIXED_COLLECTIONS`).
"""

import functools
import json

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    bindparam,
    column,
    func,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

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
#: after delete_storage), the row every write locks, the user's own quota and
#: usage. The lock reads all of them, so a write checks the quota for free.
storage_users_table = Table(
    "storage_users", metadata,
    Column("userid", BigInteger, primary_key=True, autoincrement=False),
    Column("last_modified", BigInteger, nullable=False),
    # KB; NULL: storage.quota_size applies; 0: no quota for this user.
    Column("quota_kb", BigInteger, nullable=True),
    # Running total of payload_size over all the user's rows, expired ones
    # included until purged; adjusted by every change of the user's items.
    Column("usage_bytes", BigInteger, nullable=False, server_default="0"),
    # Epoch seconds the user was deleted at (a tombstone: writes are refused);
    # NULL for a live user. purge_expired removes the row after the retention.
    Column("deleted_at", BigInteger, nullable=True),
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
    # walks the index and stops early instead of sorting. ttl comes last so
    # that the index alone says which entries are live: an OFFSET skips index
    # entries, not rows (MariaDB read 50,000 whole rows for offset=50000).
    Index("items_modified_idx", "userid", "collection", "modified", "id", "ttl"),
    Index("items_sortindex_idx", "userid", "collection", "sortindex", "id", "ttl"),
    # Live-item counts and usage per user read only this index. ttl is last on
    # purpose: as a third column SQLite would range-scan it for every GET and
    # sort the whole collection instead of walking the modified/sortindex index.
    Index("items_usage_idx", "userid", "collection", "payload_size", "ttl"),
    Index("items_expiry_idx", "ttl"),
    **_MYSQL_OPTIONS)

#: Open Sync 1.5 batch uploads. The id is random (never derived from the time
#: or the user), so an id is never reused; ``records`` and ``payload_bytes``
#: are the running totals of what the batch stages (distinct ids, UTF-8 bytes).
batches_table = Table(
    "batches", metadata,
    Column("id", String(32), primary_key=True),
    Column("userid", BigInteger, nullable=False),
    Column("collection", Integer, nullable=False),
    Column("created", BigInteger, nullable=False),  # centiseconds
    Column("expires", BigInteger, nullable=False),  # centiseconds
    Column("records", Integer, nullable=False, server_default="0"),
    Column("payload_bytes", BigInteger, nullable=False, server_default="0"),
    Index("batches_owner_idx", "userid", "collection"),
    Index("batches_expiry_idx", "expires"),
    **_MYSQL_OPTIONS)

#: What a batch stages, one row per distinct id (re-staging an id merges into
#: its row, and only its row). NULL: the field was not sent. ``ttl`` is
#: relative: it counts from the commit.
batch_items_table = Table(
    "batch_items", metadata,
    Column("batch", String(32), primary_key=True),
    Column("id", _item_id_type(), primary_key=True),
    Column("sortindex", Integer),
    Column("parentid", _item_id_type()),
    Column("predecessorid", _item_id_type()),
    Column("payload", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")),
    Column("payload_size", Integer, nullable=False, server_default="0"),
    Column("ttl", BigInteger),
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


# -- statements ----------------------------------------------------------------

_items = items_table.c
_users = storage_users_table.c
_stamps = user_collections_table.c
_names = collections_table.c
_batches = batches_table.c
_staged = batch_items_table.c

#: Columns of a full record, in the order selected.
RECORD_COLUMNS = ("id", "modified", "sortindex", "payload", "parentid", "predecessorid")
#: Largest LIMIT/OFFSET sent: every database takes a 32-bit one, not all take more.
MAX_PAGE = 2 ** 31 - 1

_OWNED = and_(_items.userid == bindparam("userid"), _items.collection == bindparam("collection"))

#: One WHERE clause per ItemQuery filter; the query field names the bind parameter.
_FILTERS = {
    "ids": _items.id.in_(bindparam("ids", expanding=True)),
    "parentid": _items.parentid == bindparam("parentid"),
    "predecessorid": _items.predecessorid == bindparam("predecessorid"),
    "newer": _items.modified > bindparam("newer", type_=BigInteger),
    "older": _items.modified < bindparam("older", type_=BigInteger),
    "modified_at_least": _items.modified >= bindparam("modified_at_least", type_=BigInteger),
    "modified_at_most": _items.modified <= bindparam("modified_at_most", type_=BigInteger),
    # Float so that index_above=2.5 is not rounded to an integer by a bind cast.
    "index_above": _items.sortindex > bindparam("index_above", type_=Float),
    "index_below": _items.sortindex < bindparam("index_below", type_=Float),
}

#: id breaks ties so that limit/offset paging is deterministic.
_ORDERS = {
    "oldest": (_items.modified.asc(), _items.id.asc()),
    "newest": (_items.modified.desc(), _items.id.desc()),
    "index": (_items.sortindex.desc(), _items.id.desc()),
}


def query_shape(query):
    """Split an ItemQuery into the statement's shape (hashable) and its bind values."""
    filters = tuple(name for name in _FILTERS if getattr(query, name) is not None)
    params = {name: getattr(query, name) for name in filters}
    if "ids" in params:
        params["ids"] = list(set(params["ids"]))
    for name in ("index_above", "index_below"):
        if name in params:
            params[name] = float(params[name])
    limited = query.limit is not None
    offset = bool(query.offset and query.offset > 0)
    if limited:
        params["limit"] = min(max(query.limit, 0), MAX_PAGE)
    if offset:
        params["offset"] = min(query.offset, MAX_PAGE)
    return (filters, query.sort, limited, offset), params


@functools.lru_cache(maxsize=1024)
def select_items(columns, shape, live_only, probe=False):
    """SELECT of ``columns`` for a :func:`query_shape`; ``live_only`` hides expired items.

    ``probe``: a LIMIT (the ``limit`` parameter) even when the shape has
    none, without changing the order: "is the answer small?" costs no more
    than the answer itself.
    """
    filters, sort, limited, offset = shape
    stmt = select(*[_items[name] for name in columns]).where(
        _OWNED, *[_FILTERS[name] for name in filters])
    if live_only:
        stmt = stmt.where(_items.ttl > bindparam("now_seconds"))
    order = _ORDERS.get(sort) or ((_items.id.asc(),) if limited or offset else ())
    stmt = stmt.order_by(*order)
    if limited or probe:
        stmt = stmt.limit(bindparam("limit", type_=Integer))
    if offset:
        stmt = stmt.offset(bindparam("offset", type_=Integer))
    return stmt


@functools.lru_cache(maxsize=256)
def count_items(filters):
    """How many live items match ``filters`` (before any offset or limit)."""
    return select(func.count()).where(
        _OWNED, *[_FILTERS[name] for name in filters], _items.ttl > bindparam("now_seconds"))


@functools.lru_cache(maxsize=256)
def delete_items(filters):
    """DELETE of a collection's items matching ``filters`` (names of ItemQuery fields)."""
    return items_table.delete().where(_OWNED, *[_FILTERS[name] for name in filters])


@functools.lru_cache(maxsize=256)
def delete_items_returning_sizes(filters):
    """:func:`delete_items` that returns each deleted row's payload_size (RETURNING)."""
    return delete_items(filters).returning(_items.payload_size)


@functools.lru_cache(maxsize=256)
def items_usage(filters):
    """How many items match ``filters`` and their bytes: what deleting them frees."""
    return select(func.count(), func.coalesce(func.sum(_items.payload_size), 0)).where(
        _OWNED, *[_FILTERS[name] for name in filters])


@functools.lru_cache(maxsize=64)
def update_items(value_keys):
    """UPDATE of the columns named by ``value_keys`` (``v_<column>`` bind names)."""
    return items_table.update().where(
        _items.userid == bindparam("k_userid"),
        _items.collection == bindparam("k_collection"),
        _items.id == bindparam("k_id"),
    ).values({key[2:]: bindparam(key) for key in value_keys})


# Items.
INSERT_ITEM = items_table.insert()
GET_ITEM = select(*[_items[name] for name in RECORD_COLUMNS]).where(
    _OWNED, _items.id == bindparam("id"), _items.ttl > bindparam("now_seconds"))
#: Full records of ids found first on a sort index (the second step of an offset page).
RECORDS_BY_IDS = select(*[_items[name] for name in RECORD_COLUMNS]).where(
    _OWNED, _FILTERS["ids"])
#: Locked so that a purge cannot delete a row between this read and our update.
EXISTING_ITEMS = select(_items.id, _items.modified, _items.ttl, _items.payload_size).where(
    _OWNED, _FILTERS["ids"]).with_for_update()
#: The same for one id (every PUT): no expanding IN to re-render on each call.
EXISTING_ITEM = select(_items.id, _items.modified, _items.ttl, _items.payload_size).where(
    _OWNED, _items.id == bindparam("id")).with_for_update()
EXPORT_ITEMS = select(*[_items[name] for name in RECORD_COLUMNS], _items.ttl).where(
    _OWNED, _items.ttl > bindparam("now_seconds")).order_by(_items.id)
DELETE_USER_ITEMS = items_table.delete().where(_items.userid == bindparam("userid"))
#: The next expired keys in expiry order, from ``floor_ttl`` on (where the
#: previous batch of a purge stopped: everything before it is gone, so the
#: scan does not walk over what earlier batches deleted).
EXPIRED_KEYS = select(_items.ttl, _items.userid, _items.collection, _items.id).where(
    _items.ttl <= bindparam("now_seconds"), _items.ttl >= bindparam("floor_ttl"),
).order_by(_items.ttl).limit(bindparam("batch_size", type_=Integer))
#: One user's and collection's expired items by id, statements per such piece:
#: SQLite (where a round trip is a function call), MySQL without JSON_TABLE.
_PURGEABLE = and_(_OWNED, _FILTERS["ids"], _items.ttl <= bindparam("now_seconds"))
PURGE_ITEMS = items_table.delete().where(_PURGEABLE)
PURGE_ITEMS_RETURNING_SIZES = PURGE_ITEMS.returning(_items.payload_size)
PURGEABLE_USAGE = select(func.count(), func.coalesce(func.sum(_items.payload_size), 0)).where(
    _PURGEABLE)
#: One account's purge on MySQL and PostgreSQL (the user's lock taken last): its
#: expired rows that no writer holds, locked; then those go by their keys (PURGE_KEYS,
#: PURGE_KEYS_BY_USER) and the user is locked without waiting, so that the purge
#: never waits while holding rows.
LOCK_PURGEABLE_SKIPPING = select(_items.id, _items.payload_size).where(
    _PURGEABLE).with_for_update(skip_locked=True)
LOCK_USER_SKIPPING = select(_users.userid).where(
    _users.userid == bindparam("userid")).with_for_update(skip_locked=True)
USER_ROW = select(_users.userid).where(_users.userid == bindparam("userid"))
#: PostgreSQL: a whole purge transaction's keys in one statement, as three
#: arrays (one compiled statement whatever their length) looked up in the
#: primary key; it answers the rows and bytes deleted per user.
_PURGE_KEYS = func.unnest(
    bindparam("userids", type_=postgresql.ARRAY(BigInteger)),
    bindparam("collections", type_=postgresql.ARRAY(Integer)),
    bindparam("ids", type_=postgresql.ARRAY(String)),
).table_valued(column("userid", BigInteger), column("collection", Integer),
               column("id", String)).render_derived(name="purged_keys")
_PURGED_KEYS = items_table.delete().where(
    _items.userid == _PURGE_KEYS.c.userid, _items.collection == _PURGE_KEYS.c.collection,
    _items.id == _PURGE_KEYS.c.id, _items.ttl <= bindparam("now_seconds"),
).returning(_items.userid, _items.payload_size).cte("purged")
PURGE_KEYS_BY_USER = select(
    _PURGED_KEYS.c.userid, func.count(), func.sum(_PURGED_KEYS.c.payload_size),
).group_by(_PURGED_KEYS.c.userid)
#: MySQL/MariaDB: the same keys as one JSON parameter, a table by JSON_TABLE
#: that drives primary-key lookups (eq_ref), the plan named in the statement
#: (STRAIGHT_JOIN, FORCE INDEX): on a table of a few rows MariaDB scanned the
#: expiry index instead, locking rows of other users. An OR of (user, collection, ids)
#: conditions costs MariaDB's range optimizer time quadratic in the conditions
#: (60 ms for 500, a full scan past some 2,000); a list of (userid, collection,
#: id) tuples is a full index scan. A DELETE with a join cannot return rows:
#: the bytes per user are read first, under the users' locks.
_PURGE_KEYS_JOIN = (
    "JSON_TABLE(:keys, '$[*]' COLUMNS (userid BIGINT PATH '$[0]',"
    " collection INT PATH '$[1]', id VARBINARY(64) PATH '$[2]')) AS purged_keys"
    " STRAIGHT_JOIN items FORCE INDEX (PRIMARY) ON items.userid = purged_keys.userid"
    " AND items.collection = purged_keys.collection AND items.id = purged_keys.id"
    " WHERE items.ttl <= :now_seconds")
PURGEABLE_KEYS_USAGE = text(
    "SELECT items.userid, COUNT(*), SUM(items.payload_size) FROM "
    + _PURGE_KEYS_JOIN + " GROUP BY items.userid")
PURGE_KEYS = text("DELETE items FROM " + _PURGE_KEYS_JOIN)
#: The first versions with JSON_TABLE; older servers purge a piece at a time.
JSON_TABLE_SINCE = {"mariadb": (10, 6), "mysql": (8, 0, 4)}


def purge_keys_params(dialect, pieces, now_seconds):
    """The parameters of the statements above for ``(user, collection, ids)`` pieces."""
    if dialect == "postgresql":
        return {"userids": [user_id for user_id, _, ids in pieces for _ in ids],
                "collections": [collection_id for _, collection_id, ids in pieces for _ in ids],
                "ids": [item_id for _, _, ids in pieces for item_id in ids],
                "now_seconds": now_seconds}
    keys = [(user_id, collection_id, item_id)
            for user_id, collection_id, ids in pieces for item_id in ids]
    # Ids as they are (not \u escapes): JSON_TABLE gives back their UTF-8 bytes.
    return {"keys": json.dumps(keys, ensure_ascii=False, separators=(",", ":")),
            "now_seconds": now_seconds}


# Per-user totals of live items.
_LIVE = and_(_items.userid == bindparam("userid"), _items.ttl > bindparam("now_seconds"))
COLLECTION_COUNTS = select(_items.collection, func.count()).where(_LIVE).group_by(
    _items.collection)
COLLECTION_USAGE = select(_items.collection, func.sum(_items.payload_size)).where(
    _LIVE).group_by(_items.collection)
TOTAL_USAGE = select(func.coalesce(func.sum(_items.payload_size), 0)).where(_LIVE)
#: When the next live item of the user (or of one collection) expires.
NEXT_EXPIRY = select(func.min(_items.ttl)).where(_LIVE)
NEXT_COLLECTION_EXPIRY = select(func.min(_items.ttl)).where(
    _OWNED, _items.ttl > bindparam("now_seconds"))

# Collection timestamps.
COLLECTION_TIMESTAMP = select(_stamps.modified).where(
    _stamps.userid == bindparam("userid"), _stamps.collection == bindparam("collection"))
COLLECTION_TIMESTAMPS = select(_stamps.collection, _stamps.modified).where(
    _stamps.userid == bindparam("userid"))
INSERT_COLLECTION_STAMP = user_collections_table.insert()
UPDATE_COLLECTION_STAMP = user_collections_table.update().where(
    _stamps.userid == bindparam("k_userid"), _stamps.collection == bindparam("k_collection"),
).values(modified=bindparam("v_modified"))
DELETE_USER_STAMPS = user_collections_table.delete().where(
    _stamps.userid == bindparam("userid"))
DELETE_COLLECTION_STAMP = user_collections_table.delete().where(
    _stamps.userid == bindparam("userid"), _stamps.collection == bindparam("collection"))

# The user's row: last stamp, quota and usage, and the write lock.
#: What the lock reads: the last stamp, the user's own quota and usage, the tombstone.
_USER_STATE = (_users.last_modified, _users.quota_kb, _users.usage_bytes, _users.deleted_at)
LOCK_USER = select(*_USER_STATE).where(
    _users.userid == bindparam("userid")).with_for_update()
#: Lock and collection timestamp in one statement. Only where a locking read
#: sees the latest committed rows of every table it reads (InnoDB) or where
#: writers are serialized anyway (SQLite); PostgreSQL would join a stale snapshot.
LOCK_USER_WITH_STAMP = select(*_USER_STATE, _stamps.modified).select_from(
    storage_users_table.outerjoin(user_collections_table, and_(
        _stamps.userid == _users.userid, _stamps.collection == bindparam("collection"))),
).where(_users.userid == bindparam("userid")).with_for_update()
#: The same and the stored state of one item (a write of one item): the write's
#: reads in one statement, as EXISTING_ITEM's columns after LOCK_USER_WITH_STAMP's.
LOCK_USER_WITH_STAMP_AND_ITEM = select(
    *_USER_STATE, _stamps.modified,
    _items.id, _items.modified, _items.ttl, _items.payload_size,
).select_from(
    storage_users_table.outerjoin(user_collections_table, and_(
        _stamps.userid == _users.userid, _stamps.collection == bindparam("collection")))
    .outerjoin(items_table, and_(
        _items.userid == _users.userid, _items.collection == bindparam("collection"),
        _items.id == bindparam("id"))),
).where(_users.userid == bindparam("userid")).with_for_update()
#: The end of every write that changed the user's stamp or usage: one UPDATE.
UPDATE_USER_ROW = storage_users_table.update().where(
    _users.userid == bindparam("k_userid")).values(
    last_modified=bindparam("v_last_modified"),
    usage_bytes=_users.usage_bytes + bindparam("v_usage_delta", type_=BigInteger))
#: The user's storage timestamp (the last stamp handed out) and tombstone.
STORAGE_TIMESTAMP = select(_users.last_modified, _users.deleted_at).where(
    _users.userid == bindparam("userid"))
#: delete_user: the row stays as a tombstone; quota and usage go with the data.
TOMBSTONE_USER = storage_users_table.update().where(
    _users.userid == bindparam("k_userid")).values(
    deleted_at=bindparam("v_deleted_at"), quota_kb=None, usage_bytes=0)
CLEAR_TOMBSTONE = storage_users_table.update().where(
    _users.userid == bindparam("k_userid")).values(deleted_at=None)
#: Tombstones past their retention, oldest first (purge_expired).
OLD_TOMBSTONES = select(_users.userid).where(
    _users.deleted_at <= bindparam("cutoff", type_=BigInteger)).order_by(
    _users.deleted_at).limit(bindparam("batch_size", type_=Integer))
PURGE_TOMBSTONES = storage_users_table.delete().where(
    _users.userid.in_(bindparam("userids", expanding=True)),
    _users.deleted_at <= bindparam("cutoff", type_=BigInteger))
USER_QUOTA = select(_users.quota_kb).where(_users.userid == bindparam("userid"))
#: The purge's lock on several users, taken in ascending order (writers hold one user).
LOCK_USERS = select(_users.userid).where(
    _users.userid.in_(bindparam("userids", expanding=True))).order_by(
    _users.userid).with_for_update()
SUBTRACT_USAGE = storage_users_table.update().where(
    _users.userid == bindparam("k_userid")).values(
    usage_bytes=_users.usage_bytes - bindparam("v_bytes", type_=BigInteger))
#: Many users' usage less what a purge freed, in one statement (where the purge
#: deletes a transaction's keys at once): PostgreSQL from two arrays, MySQL from
#: JSON_TABLE (read first, then the primary key: never a scan that would lock
#: other users' rows); an executemany of SUBTRACT_USAGE is a round trip per user.
SUBTRACT_USAGES = {
    "postgresql": text(
        "UPDATE storage_users SET usage_bytes = storage_users.usage_bytes - freed.bytes"
        " FROM unnest(CAST(:userids AS BIGINT[]), CAST(:bytes AS BIGINT[]))"
        " AS freed(userid, bytes) WHERE storage_users.userid = freed.userid"),
    "mysql": text(
        "UPDATE JSON_TABLE(:freed, '$[*]' COLUMNS ("
        "userid BIGINT PATH '$[0]', bytes BIGINT PATH '$[1]')) AS freed"
        " STRAIGHT_JOIN storage_users FORCE INDEX (PRIMARY)"
        " ON storage_users.userid = freed.userid"
        " SET storage_users.usage_bytes = storage_users.usage_bytes - freed.bytes"),
}


def subtract_usages(dialect, freed):
    """``(statement, parameters)`` of SUBTRACT_USAGES for ``{user id: bytes freed}``."""
    if dialect == "postgresql":
        return SUBTRACT_USAGES["postgresql"], {"userids": list(freed),
                                               "bytes": list(freed.values())}
    return SUBTRACT_USAGES["mysql"], {"freed": json.dumps(list(freed.items()),
                                                          separators=(",", ":"))}


#: The user's own quota and usage, for a quota check outside a write.
QUOTA_STATE = select(_users.quota_kb, _users.usage_bytes).where(
    _users.userid == bindparam("userid"))
SET_USER_QUOTA = storage_users_table.update().where(
    _users.userid == bindparam("k_userid")).values(quota_kb=bindparam("v_quota_kb"))

# Server-wide statistics (admin commands): full scans, never run by requests.
_LIVE_ANYONE = _items.ttl > bindparam("now_seconds")
COLLECTION_STATISTICS = select(
    _items.collection, func.count(func.distinct(_items.userid)), func.count(),
    func.coalesce(func.sum(_items.payload_size), 0),
).where(_LIVE_ANYONE).group_by(_items.collection)
USERS_WITH_ITEMS = select(func.count(func.distinct(_items.userid))).where(_LIVE_ANYONE)
EXPIRED_COUNT = select(func.count()).select_from(items_table).where(
    _items.ttl <= bindparam("now_seconds"))

# Collection names.
COLLECTION_BY_NAME = select(_names.id).where(_names.name == bindparam("name"))
COLLECTION_NAMES = select(_names.id, _names.name).where(
    _names.id.in_(bindparam("ids", expanding=True)))
MAX_COLLECTION_ID = select(func.max(_names.id))

# Batches (Sync 1.5 uploads). Every statement on a user's batches runs under
# that user's lock (writers, and the purge, which locks users first).
INSERT_BATCH = batches_table.insert()
BATCH = select(_batches.userid, _batches.collection, _batches.expires, _batches.records,
               _batches.payload_bytes).where(_batches.id == bindparam("batch"))
UPDATE_BATCH_TOTALS = batches_table.update().where(_batches.id == bindparam("k_batch")).values(
    records=bindparam("v_records"), payload_bytes=bindparam("v_payload_bytes"))
DELETE_BATCH = batches_table.delete().where(_batches.id == bindparam("batch"))
INSERT_STAGED = batch_items_table.insert()
#: The columns of a staged row, in the order selected.
STAGED_COLUMNS = ("id", "payload", "sortindex", "parentid", "predecessorid", "ttl")
#: What the batch already stages of some ids (sizes: what re-staging replaces).
STAGED_SIZES = select(_staged.id, _staged.payload_size).where(
    _staged.batch == bindparam("batch"), _staged.id.in_(bindparam("ids", expanding=True)))
#: A batch's staged rows in id order, from after ``after_id`` (a commit reads them in chunks).
STAGED_CHUNK = select(*[_staged[name] for name in STAGED_COLUMNS]).where(
    _staged.batch == bindparam("batch"), _staged.id > bindparam("after_id")).order_by(
    _staged.id).limit(bindparam("chunk", type_=Integer))
STAGED_FIRST_CHUNK = select(*[_staged[name] for name in STAGED_COLUMNS]).where(
    _staged.batch == bindparam("batch")).order_by(_staged.id).limit(
    bindparam("chunk", type_=Integer))
DELETE_STAGED = batch_items_table.delete().where(_staged.batch == bindparam("batch"))


@functools.lru_cache(maxsize=64)
def update_staged(value_keys):
    """UPDATE of one staged row's columns named by ``value_keys`` (``v_<column>``)."""
    return batch_items_table.update().where(
        _staged.batch == bindparam("k_batch"), _staged.id == bindparam("k_id"),
    ).values({key[2:]: bindparam(key) for key in value_keys})


_COLLECTION_BATCH_IDS = select(_batches.id).where(
    _batches.userid == bindparam("userid"), _batches.collection == bindparam("collection"))
_USER_BATCH_IDS = select(_batches.id).where(_batches.userid == bindparam("userid"))
DELETE_COLLECTION_STAGED = batch_items_table.delete().where(
    _staged.batch.in_(_COLLECTION_BATCH_IDS))
DELETE_COLLECTION_BATCHES = batches_table.delete().where(
    _batches.userid == bindparam("userid"), _batches.collection == bindparam("collection"))
DELETE_USER_STAGED = batch_items_table.delete().where(
    _staged.batch.in_(_USER_BATCH_IDS))
DELETE_USER_BATCHES = batches_table.delete().where(_batches.userid == bindparam("userid"))
#: Batches past their lifetime, oldest first, with their owners (to lock them).
EXPIRED_BATCHES = select(_batches.id, _batches.userid).where(
    _batches.expires <= bindparam("cutoff", type_=BigInteger)).order_by(
    _batches.expires).limit(bindparam("batch_size", type_=Integer))
PURGE_BATCHES = batches_table.delete().where(
    _batches.id.in_(bindparam("ids", expanding=True)),
    _batches.expires <= bindparam("cutoff", type_=BigInteger))
PURGE_STAGED = batch_items_table.delete().where(
    _staged.batch.in_(bindparam("ids", expanding=True)))
