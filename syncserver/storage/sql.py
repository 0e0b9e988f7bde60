"""The bundled storage backend: records in SQLite, MySQL/MariaDB or PostgreSQL.

How it keeps the consistency rules of :mod:`syncserver.storage`:

- Every write is one transaction that starts by locking the user's
  ``storage_users`` row (``SELECT ... FOR UPDATE``; on SQLite ``BEGIN
  IMMEDIATE`` already serializes writers). The X-If-Unmodified-Since check,
  the stamp and the write therefore never interleave with another write of
  the same user, while different users never wait for each other. A write
  the database rolls back for a deadlock (see :meth:`SQLStorage._attempts`)
  runs again from its start.
- ``storage_users.last_modified`` remembers the last stamp given to the user,
  so stamps stay strictly increasing across deletions and clock jumps.
- ``storage_users.usage_bytes`` is the running total of the user's payload
  bytes (expired items included until purged). The lock statement reads it
  with the user's own quota, so the quota is checked inside the write at no
  extra query; each change of the user's items adjusts it in the same
  transaction (the deleted rows' sizes come back by ``DELETE ... RETURNING``
  where the database has it).
- Collection timestamps live in ``user_collections``, so a collection whose
  items were all deleted stays listed with the deletion's stamp (until
  ``delete_collection`` removes its row).
- ``delete_user`` leaves the user's row as a tombstone
  (``storage_users.deleted_at``); the lock statement reads it, so every
  later write refuses the user inside its own transaction.
- Collection names map to ids in one global table. Names are resolved before
  the user's transaction and cached in-process: ids never change.

The SQL itself (tables and prebuilt statements) is in
:mod:`syncserver.storage.sql_schema`; this module decides when it runs. A
read is one statement; a write is the lock, one read of the stored rows, the
writes, the collection's timestamp and one update of the user's row. How
items are written is in :mod:`syncserver.storage.sql_writes`, batch uploads
in :mod:`syncserver.storage.sql_batches`, the purge in
:mod:`syncserver.storage.sql_purge`.
"""

import contextlib
import time

from sqlalchemy import exc

from syncserver.db import Database, direct
from syncserver.db.backed import DatabaseBacked
from syncserver.errors import ConfigError
from syncserver.storage import (
    SYNC11_WRITES,
    CollectionStatistics,
    ConflictError,
    PreconditionFailed,
    RecordStream,
    StorageBackend,
    StorageStatistics,
    StorageUnavailable,
    StoredRecord,
    UserDeleted,
    WriteResult,
    quota_left_kb,
)
from syncserver.storage import sql_schema as schema
from syncserver.storage.sql_batches import SQLBatches
from syncserver.storage.sql_purge import SQLPurge
from syncserver.storage.sql_schema import (
    FIRST_CUSTOM_COLLECTION_ID,
    FIXED_COLLECTIONS,
    collections_table,
    create_user_row_locked,
    items_table,
    metadata,
    storage_users_table,
    user_collections_table,
)
from syncserver.storage.sql_writes import UserLock, merge_writes, payload_size, write_items

__all__ = [
    "SQLStorage",
    "collections_table",
    "items_table",
    "metadata",
    "storage_users_table",
    "user_collections_table",
]

#: Answers of up to this many records are read at once; longer ones are streamed.
STREAM_THRESHOLD = 1000
#: Records per chunk of a streamed answer.
STREAM_CHUNK = 250
#: What a streamed read's snapshot transaction runs in, per database.
_SNAPSHOT_ISOLATION = {"postgresql": "REPEATABLE READ", "mysql": "REPEATABLE READ",
                       "mariadb": "REPEATABLE READ"}
#: Attempts at giving a new collection name an id when other processes race us.
_ALLOCATION_ATTEMPTS = 20


class SQLStorage(SQLBatches, SQLPurge, DatabaseBacked, StorageBackend):
    """Storage in a SQL database through SQLAlchemy Core. See the module docstring."""

    def __init__(self, database, *, owns_database=False):
        self._use_database(database, owns_database)
        self._engine = database.engine
        dialect = database.dialect
        self._lock_statement = (schema.LOCK_USER if dialect == "postgresql"
                                else schema.LOCK_USER_WITH_STAMP)
        self._lock_item_statement = (None if dialect == "postgresql"
                                     else schema.LOCK_USER_WITH_STAMP_AND_ITEM)
        self._ensure_user = create_user_row_locked(dialect)
        self._ids_by_name = dict(FIXED_COLLECTIONS)
        self._names_by_id = {cid: name for name, cid in FIXED_COLLECTIONS.items()}
        self._compiled = {}
        self._init_purge()

    @classmethod
    def from_settings(cls, settings):
        """A backend with a database of its own (the server shares one: :meth:`open`)."""
        _require_sqluri(settings)
        return cls(Database(settings.sqluri, key="storage.sqluri",
                            pool_size=settings.pool_size, pool_timeout=settings.pool_timeout,
                            pool_recycle=settings.pool_recycle,
                            connect_timeout=settings.connect_timeout,
                            query_timeout=settings.query_timeout), owns_database=True)

    @classmethod
    def open(cls, settings, databases):
        _require_sqluri(settings)
        return cls(databases.database(settings.sqluri, "storage.sqluri", settings.create_tables))

    # -- connections --------------------------------------------------------

    def _reading(self):
        return self.database.reading(StorageUnavailable)

    @contextlib.contextmanager
    def _writing(self, user_id, collection_id, if_unmodified_since=None, quota_kb=None, *,
                 precondition="collection", deleted_user="refuse", item_id=None):
        """One write transaction holding the user's lock.

        Refuses a deleted user (``deleted_user="refuse"``; ``"allow"`` goes
        on, ``"revive"`` clears the tombstone), checks the quota (when
        ``quota_kb`` is not None), then ``if_unmodified_since`` against the
        collection's timestamp (``precondition="collection"``) or the
        user's (``"storage"``; ``None``: the caller checks); saves the
        user's row before the commit. ``item_id``: the write's one item,
        whose stored state the lock reads too where it can
        (:attr:`UserLock.stored_item`).
        """
        try:
            with self.database.writing(StorageUnavailable) as connection:
                lock = self._lock_user(connection, user_id, collection_id, item_id)
                if lock.deleted_at is not None:
                    if deleted_user == "refuse":
                        raise UserDeleted(f"user {user_id} was deleted")
                    if deleted_user == "revive":
                        connection.execute(schema.CLEAR_TOMBSTONE, {"k_userid": user_id})
                        lock.deleted_at = None
                if quota_kb is not None:
                    lock.quota_left_kb = quota_left_kb(quota_kb, lock.own_quota_kb,
                                                       lock.usage_bytes)
                target = {"collection": lock.collection_ts, "storage": lock.last_modified,
                          None: None}[precondition]
                if (if_unmodified_since is not None and target is not None
                        and target > if_unmodified_since):
                    raise PreconditionFailed(target)
                yield lock
                lock.save()
        except exc.IntegrityError as error:
            raise ConflictError("the write collided with a concurrent change") from error

    def _attempts(self):
        """Tries of a write (:meth:`Database.attempts`): one a deadlock ended runs again.

        Writers lock the user first, so they never deadlock each other; a
        purge of one account takes the user's lock last, and MariaDB has been
        seen to wait (not skip) on that ``SKIP LOCKED``, then roll back
        whichever of the two weighed less, often the writer. Each write's
        block therefore runs again from the start: what it needs from before
        the block must survive a try unchanged.
        """
        return self.database.attempts(StorageUnavailable, what="storage write")

    def _lock_user(self, connection, user_id, collection_id, item_id=None):
        params = {"userid": user_id, "collection": collection_id or 0}
        statement = self._lock_statement
        if (item_id is not None and collection_id is not None
                and self._lock_item_statement is not None):
            statement = self._lock_item_statement
            params["id"] = item_id
        row = direct.first(connection, statement, params)
        if row is None:  # the user's first write
            connection.execute(self._ensure_user, {"userid": user_id, "last_modified": 0})
            row = direct.first(connection, statement, params)
            if row is None:
                raise ConflictError("the user was deleted while being written to")
        if len(row) == 9:  # with the item: (id, modified, ttl, size), id None when absent
            return UserLock(connection, user_id, collection_id, row[:4], row[4],
                            stored_item=row[5:] if row[5] is not None else ())
        if len(row) == 5:
            collection_ts = row[4]
        elif collection_id is not None:
            stamp_row = direct.first(connection, schema.COLLECTION_TIMESTAMP, params)
            collection_ts = stamp_row[0] if stamp_row is not None else None
        else:
            collection_ts = None
        return UserLock(connection, user_id, collection_id, row[:4], collection_ts)

    def _delete_returns(self):
        """True when deleted rows' sizes can come back with the DELETE (not MySQL).

        Asked at each use: the dialect knows the server's version only once
        it has connected.
        """
        return bool(self._engine.dialect.delete_returning)

    def _delete_counted(self, connection, filters, params, few):
        """Delete a collection's items matching ``filters``; return (rows, bytes) deleted.

        ``few``: the rows are few enough to have their sizes returned one by
        one (RETURNING, where the database has it); otherwise, and on MySQL,
        their total is read first (under the user's lock nothing changes them
        in between).
        """
        if few and self._delete_returns():
            sizes = connection.execute(
                schema.delete_items_returning_sizes(filters), params).scalars().all()
            return len(sizes), sum(sizes)
        count, size = connection.execute(schema.items_usage(filters), params).one()
        if not count:
            return 0, 0
        deleted = connection.execute(schema.delete_items(filters), params).rowcount
        return deleted, int(size)

    # -- collection names ---------------------------------------------------

    def _collection_id(self, name, create):
        """The id of collection ``name``; None if unknown and not ``create``."""
        collection_id = self._ids_by_name.get(name)
        if collection_id is not None:
            return collection_id
        with self._reading() as connection:
            collection_id = connection.execute(schema.COLLECTION_BY_NAME, {"name": name}).scalar()
        if collection_id is None and create:
            collection_id = self._allocate_collection(name)
        if collection_id is not None:
            self._ids_by_name[name] = collection_id
            self._names_by_id[collection_id] = name
        return collection_id

    def _allocate_collection(self, name):
        """Give ``name`` the next free id, in its own short transaction.

        A concurrent creator (of the same name or of the same id) makes our
        INSERT fail; we then look again and retry.
        """
        for _ in range(_ALLOCATION_ATTEMPTS):
            try:
                with self.database.writing(StorageUnavailable) as connection:
                    existing = connection.execute(
                        schema.COLLECTION_BY_NAME, {"name": name}).scalar()
                    if existing is not None:
                        return existing
                    top = connection.execute(schema.MAX_COLLECTION_ID).scalar() or 0
                    collection_id = max(FIRST_CUSTOM_COLLECTION_ID, top + 1)
                    connection.execute(collections_table.insert(),
                                       {"id": collection_id, "name": name})
                    return collection_id
            except exc.IntegrityError:
                continue
        raise ConflictError(f"could not allocate an id for collection {name!r}")

    def _named(self, connection, pairs):
        """``{name: value}`` from ``(collection id, value)`` pairs."""
        pairs = list(pairs)
        unknown = [cid for cid, _ in pairs if cid not in self._names_by_id]
        if unknown:
            for cid, name in connection.execute(schema.COLLECTION_NAMES, {"ids": unknown}):
                self._names_by_id[cid] = name
                self._ids_by_name[name] = cid
        names = self._names_by_id
        # An id without a name cannot be shown to a client; it is skipped.
        return {names[cid]: value for cid, value in pairs if cid in names}

    # -- reads --------------------------------------------------------------

    def is_healthy(self):
        try:
            with self._reading() as connection:
                connection.execute(schema.COLLECTION_BY_NAME, {"name": "meta"}).scalar()
            return True
        except (StorageUnavailable, exc.SQLAlchemyError):
            return False

    def get_storage_timestamp(self, user_id):
        with self._reading() as connection:
            row = connection.execute(schema.STORAGE_TIMESTAMP, {"userid": user_id}).first()
        if row is None or row.deleted_at is not None:
            return 0
        return row.last_modified

    def get_collection_timestamps(self, user_id):
        with self._reading() as connection:
            rows = direct.all_rows(connection, schema.COLLECTION_TIMESTAMPS, {"userid": user_id})
            return self._named(connection, rows)

    def get_collection_timestamp(self, user_id, collection):
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return None
        with self._reading() as connection:
            return connection.execute(schema.COLLECTION_TIMESTAMP, {
                "userid": user_id, "collection": collection_id}).scalar()

    def get_collection_counts(self, user_id):
        return self._per_collection(schema.COLLECTION_COUNTS, user_id)

    def get_collection_usage(self, user_id):
        return self._per_collection(schema.COLLECTION_USAGE, user_id)

    def _per_collection(self, statement, user_id):
        with self._reading() as connection:
            rows = connection.execute(statement, {
                "userid": user_id, "now_seconds": int(time.time())}).all()
            return self._named(connection, ((cid, int(value)) for cid, value in rows))

    def get_total_usage(self, user_id):
        with self._reading() as connection:
            return int(connection.execute(schema.TOTAL_USAGE, {
                "userid": user_id, "now_seconds": int(time.time())}).scalar())

    def get_next_expiry(self, user_id, collection=None):
        params = {"userid": user_id, "now_seconds": int(time.time())}
        statement = schema.NEXT_EXPIRY
        if collection is not None:
            params["collection"] = self._collection_id(collection, create=False)
            if params["collection"] is None:
                return None
            statement = schema.NEXT_COLLECTION_EXPIRY
        with self._reading() as connection:
            return connection.execute(statement, params).scalar()

    def get_items(self, user_id, collection, query, full):
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return []
        shape, params = schema.query_shape(query)
        params.update(userid=user_id, collection=collection_id, now_seconds=int(time.time()))
        return self._read_records(shape, params, full)

    def stream_items(self, user_id, collection, query, full):
        """Small answers in one read; larger ones from one snapshot, a chunk at a time.

        The first read is the query itself with a LIMIT of
        :data:`STREAM_THRESHOLD` + 1 records: when it finds no more, it is the
        answer. Otherwise the answer is read again inside a snapshot
        transaction (REPEATABLE READ on PostgreSQL and MySQL, a read
        transaction on SQLite) holding one pooled connection until the stream
        is closed: a COUNT first (the count), then the records through a
        server-side cursor, :data:`STREAM_CHUNK` at a time. Both see the same
        snapshot, so the count is exactly what is sent, whatever is written
        meanwhile.
        """
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return RecordStream.of([])
        shape, params = schema.query_shape(query)
        params.update(userid=user_id, collection=collection_id, now_seconds=int(time.time()))
        if query.limit is not None and params["limit"] <= STREAM_THRESHOLD:
            return RecordStream.of(self._read_records(shape, params, full))
        probe = dict(params, limit=min(params.get("limit", STREAM_THRESHOLD + 1),
                                       STREAM_THRESHOLD + 1))
        records = self._read_records(shape, probe, full, probe=True)
        if len(records) <= STREAM_THRESHOLD:
            return RecordStream.of(records)
        columns = schema.RECORD_COLUMNS if full else ("id",)
        return self._snapshot_stream(shape, params, columns, full)

    def _read_records(self, shape, params, full, probe=False):
        """One read of the records a query shape selects (at most 1,001 when ``probe``).

        A full read with an offset and a sort goes in two steps: the ids of
        the page on the sort index alone (it holds ttl, so skipping the
        offset reads index entries only), then those rows by primary key.
        """
        _filters, sort, _limited, offset = shape
        with self._reading() as connection:
            if not full:
                rows = connection.execute(
                    schema.select_items(("id",), shape, True, probe), params).all()
                return [{"id": row[0]} for row in rows]
            if not (offset and sort is not None):
                return _records(connection.execute(
                    schema.select_items(schema.RECORD_COLUMNS, shape, True, probe),
                    params).all())
            ids = connection.execute(
                schema.select_items(("id",), shape, True, probe), params).scalars().all()
            if not ids:
                return []
            by_id = {row[0]: row for row in connection.execute(schema.RECORDS_BY_IDS, {
                "userid": params["userid"], "collection": params["collection"], "ids": ids})}
        # A row deleted between the two reads is left out.
        return _records([by_id[item_id] for item_id in ids if item_id in by_id])

    def _snapshot_stream(self, shape, params, columns, full):
        filters = shape[0]
        resources = contextlib.ExitStack()
        try:
            with self.database.translating(StorageUnavailable):
                connection = resources.enter_context(self.database.reading(StorageUnavailable))
                isolation = _SNAPSHOT_ISOLATION.get(self._engine.dialect.name)
                if isolation is not None:
                    connection.execution_options(isolation_level=isolation)
                else:  # SQLite: reads run without BEGIN; this one needs its snapshot
                    connection.exec_driver_sql("BEGIN")
                total = connection.execute(schema.count_items(filters), params).scalar()
                result = connection.execution_options(
                    stream_results=True, max_row_buffer=STREAM_CHUNK).execute(
                    schema.select_items(columns, shape, True), params)
                resources.callback(result.close)
        except BaseException:
            resources.close()
            raise
        count = max(0, total - params.get("offset", 0))
        if "limit" in params:
            count = min(count, params["limit"])

        def chunks():
            with self.database.translating(StorageUnavailable):
                for rows in result.partitions(STREAM_CHUNK):
                    yield _records(rows) if full else [{"id": row[0]} for row in rows]

        return RecordStream(count, chunks(), close=resources.close)

    def get_item(self, user_id, collection, item_id):
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return None
        with self._reading() as connection:
            row = connection.execute(schema.GET_ITEM, {
                "userid": user_id, "collection": collection_id, "id": item_id,
                "now_seconds": int(time.time())}).first()
        return _records([row])[0] if row is not None else None

    # -- writes -------------------------------------------------------------

    def set_items(self, user_id, collection, items, now, if_unmodified_since=None,
                  quota_kb=None, *, rules=SYNC11_WRITES, precondition="collection"):
        """Lock (quota, precondition), one SELECT of the stored rows, one INSERT, UPDATEs."""
        writes = merge_writes(items)
        _check_precondition_kind(precondition)
        if precondition == "item" and len(writes) != 1:
            raise ValueError('precondition="item" needs exactly one item')
        collection_id = self._collection_id(collection, create=True)
        by_collection = if_unmodified_since if precondition == "collection" else None
        only_id = next(iter(writes)) if len(writes) == 1 else None
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id, by_collection, quota_kb,
                                        item_id=only_id) as lock:
                stamp = lock.next_stamp(now)
                modified, stamped = write_items(
                    lock, writes, stamp, rules, self._executemany,
                    if_item_unmodified_since=(if_unmodified_since if precondition == "item"
                                              else None))
                if not (stamped or rules.stamp_collection_always):
                    return WriteResult(now, modified, lock.quota_left_kb)
                lock.record(stamp)
                return WriteResult(stamp, modified, lock.quota_left_kb)

    def check_quota(self, user_id, quota_kb):
        """One primary-key read of the user's own quota and usage total."""
        if quota_kb is None:
            return None
        with self._reading() as connection:
            row = connection.execute(schema.QUOTA_STATE, {"userid": user_id}).first()
        own_quota_kb, used_bytes = row if row is not None else (None, 0)
        return quota_left_kb(quota_kb, own_quota_kb, used_bytes)

    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None, *,
                    precondition="collection"):
        _check_precondition_kind(precondition)
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return None
        by_collection = if_unmodified_since if precondition == "collection" else None
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id, by_collection) as lock:
                params = {"userid": user_id, "collection": collection_id, "ids": [item_id]}
                if precondition == "item":
                    row = lock.connection.execute(schema.EXISTING_ITEM, {
                        "userid": user_id, "collection": collection_id, "id": item_id}).first()
                    if row is None or row.ttl <= int(time.time()):
                        return None  # missing or expired: nothing to delete, nothing stamped
                    if (if_unmodified_since is not None
                            and (row.modified or 0) > if_unmodified_since):
                        raise PreconditionFailed(row.modified)
                deleted, size = self._delete_counted(lock.connection, ("ids",), params, few=True)
                lock.add_usage(-size)
                return self._stamp_deletion(lock, deleted, now)

    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None, *,
                     stamp_always=False):
        """Filters only: one DELETE (and the sum of what it frees). With limit/offset:
        select the keys, then delete them."""
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return None
        shape, params = schema.query_shape(query)
        params.update(userid=user_id, collection=collection_id)
        filters, _sort, limited, offset = shape
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id, if_unmodified_since) as lock:
                connection = lock.connection
                deleting, by = filters, params
                if limited or offset:
                    keys = connection.execute(
                        schema.select_items(("id",), shape, False), params).scalars().all()
                    if not keys:
                        return self._stamp_deletion(lock, 0, now, stamp_always)
                    deleting = ("ids",)
                    by = {"userid": user_id, "collection": collection_id, "ids": keys}
                deleted, size = self._delete_counted(connection, deleting, by,
                                                     few=deleting == ("ids",))
                lock.add_usage(-size)
                return self._stamp_deletion(lock, deleted, now, stamp_always)

    def _executemany(self, connection, statement, rows):
        """Run ``statement`` (Core) once per row, its SQL compiled once per backend.

        Passing plain rows to the driver skips SQLAlchemy's per-row parameter
        processing, the largest cost of a batch of 100 in Python. The
        statements used here bind only str, int and None, which every driver
        takes as they are.
        """
        compiled = self._compiled.get(statement)
        if compiled is None:
            result = statement.compile(dialect=self._engine.dialect)
            order = result.positiontup if result.positional else None
            compiled = self._compiled[statement] = (result.string, order)
        sql, order = compiled
        if order is not None:
            rows = [tuple(row[name] for name in order) for row in rows]
        direct.executemany_sql(connection, sql, rows)

    @staticmethod
    def _stamp_deletion(lock, deleted, now, stamp_always=False):
        """The deletion's stamp; None when nothing went (unless ``stamp_always``
        and the user has the collection)."""
        if not deleted and not (stamp_always and lock.collection_ts is not None):
            return None
        stamp = lock.next_stamp(now)
        lock.record(stamp)
        return stamp

    def delete_collection(self, user_id, collection, now, if_unmodified_since=None):
        """Items (their bytes leave the usage), batches and the collection's row; then stamp."""
        collection_id = self._collection_id(collection, create=False)
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id, if_unmodified_since) as lock:
                if collection_id is not None:
                    connection = lock.connection
                    params = {"userid": user_id, "collection": collection_id}
                    _, size = self._delete_counted(connection, (), params, few=False)
                    lock.add_usage(-size)
                    connection.execute(schema.DELETE_COLLECTION_STAGED, params)
                    connection.execute(schema.DELETE_COLLECTION_BATCHES, params)
                    connection.execute(schema.DELETE_COLLECTION_STAMP, params)
                stamp = lock.next_stamp(now)
                lock.record_storage(stamp)
                return stamp

    def delete_storage(self, user_id, now, if_unmodified_since=None):
        """Everything of the user but its row; the deletion is stamped, whatever it found."""
        for attempt in self._attempts():
            with attempt, self._writing(user_id, None, if_unmodified_since,
                                        precondition="storage") as lock:
                self._delete_user_data(lock)
                lock.add_usage(-lock.usage_bytes)  # nothing is left
                stamp = lock.next_stamp(now)
                lock.record_storage(stamp)
                return stamp

    def delete_user(self, user_id):
        """The user's data goes; its row stays as a tombstone (quota and usage reset)."""
        # The user's lock comes first, as for writers (even when the row must be
        # created for it), so the two never wait for each other in opposite orders.
        for attempt in self._attempts():
            with attempt, self._writing(user_id, None, deleted_user="allow") as lock:
                self._delete_user_data(lock)
                lock.connection.execute(schema.TOMBSTONE_USER, {
                    "k_userid": user_id, "v_deleted_at": int(time.time())})

    @staticmethod
    def _delete_user_data(lock):
        params = {"userid": lock.user_id}
        for statement in (schema.DELETE_USER_ITEMS, schema.DELETE_USER_STAMPS,
                          schema.DELETE_USER_STAGED, schema.DELETE_USER_BATCHES):
            lock.connection.execute(statement, params)

    # -- export and import ---------------------------------------------------

    def export_records(self, user_id, collection):
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return []
        with self._reading() as connection:
            rows = connection.execute(schema.EXPORT_ITEMS, {
                "userid": user_id, "collection": collection_id,
                "now_seconds": int(time.time())}).all()
        return [StoredRecord(id=item_id, modified=modified, sortindex=sortindex, payload=payload,
                             parentid=parentid, predecessorid=predecessorid, expires=ttl)
                for item_id, modified, sortindex, payload, parentid, predecessorid, ttl in rows]

    def restore_records(self, user_id, collection, records, timestamp):
        """Delete the ids being restored, insert them as given, move the stamps forward."""
        records = list({record.id: record for record in records}.values())
        collection_id = self._collection_id(collection, create=True)
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id, deleted_user="revive") as lock:
                connection = lock.connection
                owner = {"userid": user_id, "collection": collection_id}
                if records:
                    _, replaced_size = self._delete_counted(connection, ("ids",), {
                        **owner, "ids": [record.id for record in records]}, few=True)
                    rows = [{
                        **owner, "id": record.id, "sortindex": record.sortindex,
                        "parentid": record.parentid, "predecessorid": record.predecessorid,
                        "payload": record.payload, "modified": record.modified,
                        "payload_size": payload_size(record.payload),
                        "ttl": record.expires} for record in records]
                    self._executemany(connection, schema.INSERT_ITEM, rows)
                    lock.add_usage(sum(row["payload_size"] for row in rows) - replaced_size)
                stamp = max([lock.collection_ts or 0, timestamp]
                            + [record.modified or 0 for record in records])
                if stamp != lock.collection_ts:
                    lock.record(stamp)
                return stamp

    # -- administration -----------------------------------------------------

    def count_expired(self, now_seconds):
        with self._reading() as connection:
            return int(connection.execute(
                schema.EXPIRED_COUNT, {"now_seconds": int(now_seconds)}).scalar())

    def get_statistics(self, now_seconds):
        params = {"now_seconds": int(now_seconds)}
        with self._reading() as connection:
            rows = connection.execute(schema.COLLECTION_STATISTICS, params).all()
            users = int(connection.execute(schema.USERS_WITH_ITEMS, params).scalar())
            expired = int(connection.execute(schema.EXPIRED_COUNT, params).scalar())
            per_collection = self._named(connection, (
                (cid, CollectionStatistics(users=int(u), items=int(n), bytes=int(b)))
                for cid, u, n, b in rows))
        return StorageStatistics(
            users=users, items=sum(c.items for c in per_collection.values()),
            bytes=sum(c.bytes for c in per_collection.values()), expired_items=expired,
            collections=dict(sorted(per_collection.items())))

    def get_user_quota(self, user_id):
        with self._reading() as connection:
            return connection.execute(schema.USER_QUOTA, {"userid": user_id}).scalar()

    def set_user_quota(self, user_id, quota_kb):
        """Under the user's lock, which creates the user's row when it is missing."""
        for attempt in self._attempts():
            with attempt, self._writing(user_id, None) as lock:
                lock.connection.execute(schema.SET_USER_QUOTA, {
                    "k_userid": user_id, "v_quota_kb": quota_kb})


def _check_precondition_kind(precondition):
    if precondition not in ("collection", "item"):
        raise ValueError(f"unknown precondition {precondition!r}")


def _require_sqluri(settings):
    if not settings.sqluri:
        raise ConfigError("storage.sqluri is required for the sql storage backend.")


def _records(rows):
    """Full records (non-null fields only) from rows of ``schema.RECORD_COLUMNS``.

    Unrolled because it runs for every record read: twice as fast as a
    comprehension over the columns.
    """
    records = []
    append = records.append
    for item_id, modified, sortindex, payload, parentid, predecessorid in rows:
        record = {"id": item_id}
        if modified is not None:
            record["modified"] = modified
        if sortindex is not None:
            record["sortindex"] = sortindex
        if payload is not None:
            record["payload"] = payload
        if parentid is not None:
            record["parentid"] = parentid
        if predecessorid is not None:
            record["predecessorid"] = predecessorid
        append(record)
    return records
