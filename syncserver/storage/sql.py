"""The bundled storage backend: records in SQLite, MySQL/MariaDB or PostgreSQL.

How it keeps the consistency rules of :mod:`syncserver.storage`:

- Every write is one transaction that starts by locking the user's
  ``storage_users`` row (``SELECT ... FOR UPDATE``; on SQLite ``BEGIN
  IMMEDIATE`` already serializes writers). The X-If-Unmodified-Since check,
  the stamp and the write therefore never interleave with another write of
  the same user, while different users never wait for each other.
- ``storage_users.last_modified`` remembers the last stamp given to the user,
  so stamps stay strictly increasing across deletions and clock jumps.
- ``storage_users.usage_bytes`` is the running total of the user's payload
  bytes (expired items included until purged). The lock statement reads it
  with the user's own quota, so the quota is checked inside the write at no
  extra query; each change of the user's items adjusts it in the same
  transaction (the deleted rows' sizes come back by ``DELETE ... RETURNING``
  where the database has it).
- Collection timestamps live in ``user_collections``, so a collection whose
  items were all deleted stays listed with the deletion's stamp.
- Collection names map to ids in one global table. Names are resolved before
  the user's transaction and cached in-process: ids never change.

The SQL itself (tables and prebuilt statements) is in
:mod:`syncserver.storage.sql_schema`; this module decides when it runs. A
read is one statement; a write is the lock, one read of the stored rows, the
writes, the collection's timestamp and one update of the user's row.
"""

import contextlib
import time

from sqlalchemy import exc

from syncserver.db import Database
from syncserver.db.backed import DatabaseBacked
from syncserver.errors import ConfigError
from syncserver.storage import (
    NEVER_EXPIRES,
    CollectionStatistics,
    ConflictError,
    PreconditionFailed,
    RecordStream,
    StorageBackend,
    StorageStatistics,
    StorageUnavailable,
    StoredRecord,
    WriteResult,
    quota_left_kb,
)
from syncserver.storage import sql_schema as schema
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

__all__ = [
    "SQLStorage",
    "collections_table",
    "items_table",
    "metadata",
    "storage_users_table",
    "user_collections_table",
]

_METADATA_FIELDS = ("sortindex", "parentid", "predecessorid")
#: How long one purge transaction should hold its users' locks (seconds).
PURGE_TRANSACTION_SECONDS = 0.01
#: Bounds of the rows deleted per purge transaction (it starts at the lower one).
_PURGE_ROWS_MIN, _PURGE_ROWS_MAX = 50, 5000
#: Free pages a SQLite file gives back per short write transaction (4 KiB pages: 8 MiB).
_VACUUM_STEP_PAGES = 2048
#: Answers of up to this many records are read at once; longer ones are streamed.
STREAM_THRESHOLD = 1000
#: Records per chunk of a streamed answer.
STREAM_CHUNK = 250
#: What a streamed read's snapshot transaction runs in, per database.
_SNAPSHOT_ISOLATION = {"postgresql": "REPEATABLE READ", "mysql": "REPEATABLE READ",
                       "mariadb": "REPEATABLE READ"}
#: Attempts at giving a new collection name an id when other processes race us.
_ALLOCATION_ATTEMPTS = 20


class _UserLock:
    """What a write learned while locking the user, and what it changes in the user's row.

    The stamp and usage changes are written by :meth:`save`, once, at the end
    of the transaction.
    """

    __slots__ = ("changed", "collection_id", "collection_ts", "connection", "last_modified",
                 "own_quota_kb", "quota_left_kb", "usage_bytes", "usage_delta", "user_id")

    def __init__(self, connection, user_id, collection_id, row, collection_ts):
        self.connection = connection
        self.user_id = user_id
        self.collection_id = collection_id
        self.last_modified, self.own_quota_kb, self.usage_bytes = row
        self.collection_ts = collection_ts
        self.usage_delta = 0
        self.quota_left_kb = None
        self.changed = False

    def next_stamp(self, now):
        """The user's next stamp: ``now``, unless that would not move forward."""
        return max(now, self.last_modified + 1, (self.collection_ts or 0) + 1)

    def record(self, stamp):
        """Make ``stamp`` the collection's timestamp and, if newer, the user's last stamp."""
        if self.collection_id is not None:
            if self.collection_ts is None:
                self.connection.execute(schema.INSERT_COLLECTION_STAMP, {
                    "userid": self.user_id, "collection": self.collection_id, "modified": stamp})
            else:
                self.connection.execute(schema.UPDATE_COLLECTION_STAMP, {
                    "k_userid": self.user_id, "k_collection": self.collection_id,
                    "v_modified": stamp})
            self.collection_ts = stamp
        self.last_modified = max(self.last_modified, stamp)
        self.changed = True

    def add_usage(self, delta):
        """Count ``delta`` bytes more (or fewer) in the user's usage."""
        if delta:
            self.usage_delta += delta
            self.changed = True

    def save(self):
        """Write the user's new last stamp and usage (one UPDATE), if they changed."""
        if self.changed:
            self.connection.execute(schema.UPDATE_USER_ROW, {
                "k_userid": self.user_id, "v_last_modified": self.last_modified,
                "v_usage_delta": self.usage_delta})
            self.changed = False


class SQLStorage(DatabaseBacked, StorageBackend):
    """Storage in a SQL database through SQLAlchemy Core. See the module docstring."""

    def __init__(self, database, *, owns_database=False):
        self._use_database(database, owns_database)
        self._engine = database.engine
        dialect = database.dialect
        self._lock_statement = (schema.LOCK_USER if dialect == "postgresql"
                                else schema.LOCK_USER_WITH_STAMP)
        self._ensure_user = create_user_row_locked(dialect)
        self._ids_by_name = dict(FIXED_COLLECTIONS)
        self._names_by_id = {cid: name for name, cid in FIXED_COLLECTIONS.items()}
        self._compiled = {}
        #: Rows per purge transaction (adapted), and where the last purge stopped.
        self._purge_rows = _PURGE_ROWS_MIN
        self._purge_floor = None

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
    def _writing(self, user_id, collection_id, if_unmodified_since=None, quota_kb=None):
        """One write transaction holding the user's lock.

        Checks the quota (when ``quota_kb`` is not None), then the
        precondition; saves the user's row before the commit.
        """
        try:
            with self.database.writing(StorageUnavailable) as connection:
                lock = self._lock_user(connection, user_id, collection_id)
                if quota_kb is not None:
                    lock.quota_left_kb = quota_left_kb(quota_kb, lock.own_quota_kb,
                                                       lock.usage_bytes)
                if (if_unmodified_since is not None and lock.collection_ts is not None
                        and lock.collection_ts > if_unmodified_since):
                    raise PreconditionFailed(lock.collection_ts)
                yield lock
                lock.save()
        except exc.IntegrityError as error:
            raise ConflictError("the write collided with a concurrent change") from error

    def _lock_user(self, connection, user_id, collection_id):
        params = {"userid": user_id, "collection": collection_id or 0}
        row = connection.execute(self._lock_statement, params).first()
        if row is None:  # the user's first write
            connection.execute(self._ensure_user, {"userid": user_id, "last_modified": 0})
            row = connection.execute(self._lock_statement, params).first()
            if row is None:
                raise ConflictError("the user was deleted while being written to")
        if len(row) == 4:
            collection_ts = row[3]
        elif collection_id is not None:
            collection_ts = connection.execute(schema.COLLECTION_TIMESTAMP, params).scalar()
        else:
            collection_ts = None
        return _UserLock(connection, user_id, collection_id, row[:3], collection_ts)

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

    def get_collection_timestamps(self, user_id):
        with self._reading() as connection:
            rows = connection.execute(schema.COLLECTION_TIMESTAMPS, {"userid": user_id}).all()
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
                  quota_kb=None):
        """Lock (quota, precondition), one SELECT of the stored rows, one INSERT, UPDATEs."""
        writes = _merge_writes(items)
        collection_id = self._collection_id(collection, create=True)
        with self._writing(user_id, collection_id, if_unmodified_since, quota_kb) as lock:
            if not writes:
                return WriteResult(now, {}, lock.quota_left_kb)
            connection = lock.connection
            now_seconds = int(time.time())
            owner = {"userid": user_id, "collection": collection_id}
            if len(writes) == 1:
                (only_id,) = writes
                rows = connection.execute(schema.EXISTING_ITEM, {**owner, "id": only_id}).all()
            else:
                rows = connection.execute(
                    schema.EXISTING_ITEMS, {**owner, "ids": list(writes)}).all()
            stored = {item_id: (modified, ttl, size) for item_id, modified, ttl, size in rows}
            stamped = any("payload" in fields for fields in writes.values())
            stamp = lock.next_stamp(now) if stamped else now
            inserts, replaced, updates, modified = [], [], {}, {}
            usage_delta = 0
            for item_id, fields in writes.items():
                previous = stored.get(item_id)
                payload = fields.get("payload")
                if previous is None or previous[1] <= now_seconds:
                    # New, or expired and so replaced whole.
                    if previous is not None:
                        replaced.append(item_id)
                        usage_delta -= previous[2]
                    ttl = fields.get("ttl")
                    row = {
                        "userid": user_id, "collection": collection_id, "id": item_id,
                        "sortindex": fields.get("sortindex"), "parentid": fields.get("parentid"),
                        "predecessorid": fields.get("predecessorid"), "payload": payload,
                        "payload_size": len(payload.encode("utf-8")) if payload is not None else 0,
                        "modified": stamp if payload is not None else None,
                        "ttl": now_seconds + ttl if ttl is not None else NEVER_EXPIRES,
                    }
                    inserts.append(row)
                    usage_delta += row["payload_size"]
                    modified[item_id] = row["modified"]
                    continue
                values = {"v_" + name: fields[name] for name in _METADATA_FIELDS if name in fields}
                if "ttl" in fields:
                    values["v_ttl"] = now_seconds + fields["ttl"]
                if payload is not None:
                    size = len(payload.encode("utf-8"))
                    values.update(v_payload=payload, v_modified=stamp, v_payload_size=size)
                    usage_delta += size - previous[2]
                    modified[item_id] = stamp
                else:
                    modified[item_id] = previous[0]
                if values:
                    key = tuple(sorted(values))
                    values.update(k_userid=user_id, k_collection=collection_id, k_id=item_id)
                    updates.setdefault(key, []).append(values)
            if replaced:
                connection.execute(schema.delete_items(("ids",)), {
                    "userid": user_id, "collection": collection_id, "ids": replaced})
            if inserts:
                self._executemany(connection, schema.INSERT_ITEM, inserts)
            for key, rows in updates.items():
                self._executemany(connection, schema.update_items(key), rows)
            lock.add_usage(usage_delta)
            if stamped:
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

    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None):
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return None
        with self._writing(user_id, collection_id, if_unmodified_since) as lock:
            deleted, size = self._delete_counted(lock.connection, ("ids",), {
                "userid": user_id, "collection": collection_id, "ids": [item_id]}, few=True)
            lock.add_usage(-size)
            return self._stamp_deletion(lock, deleted, now)

    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None):
        """Filters only: one DELETE (and the sum of what it frees). With limit/offset:
        select the keys, then delete them."""
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return None
        shape, params = schema.query_shape(query)
        params.update(userid=user_id, collection=collection_id)
        filters, _sort, limited, offset = shape
        with self._writing(user_id, collection_id, if_unmodified_since) as lock:
            connection = lock.connection
            if limited or offset:
                keys = connection.execute(
                    schema.select_items(("id",), shape, False), params).scalars().all()
                if not keys:
                    return None
                params = {"userid": user_id, "collection": collection_id, "ids": keys}
                filters = ("ids",)
            deleted, size = self._delete_counted(connection, filters, params,
                                                 few=filters == ("ids",))
            lock.add_usage(-size)
            return self._stamp_deletion(lock, deleted, now)

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
        connection.exec_driver_sql(sql, rows)

    @staticmethod
    def _stamp_deletion(lock, deleted, now):
        if not deleted:
            return None
        stamp = lock.next_stamp(now)
        lock.record(stamp)
        return stamp

    def delete_storage(self, user_id, now):
        """Returns the deletion's stamp if anything was deleted, else None."""
        with self._writing(user_id, None) as lock:
            params = {"userid": user_id}
            deleted = lock.connection.execute(schema.DELETE_USER_ITEMS, params).rowcount
            deleted += lock.connection.execute(schema.DELETE_USER_STAMPS, params).rowcount
            lock.add_usage(-lock.usage_bytes)  # nothing is left
            return self._stamp_deletion(lock, deleted, now)

    def delete_user(self, user_id):
        # The user's lock comes first, as for writers (even when the row must be
        # created for it), so the two never wait for each other in opposite orders.
        with self._writing(user_id, None) as lock:
            for statement in (schema.DELETE_USER_ITEMS, schema.DELETE_USER_STAMPS,
                              schema.DELETE_USER_ROW):
                lock.connection.execute(statement, {"userid": user_id})

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
        with self._writing(user_id, collection_id) as lock:
            connection = lock.connection
            owner = {"userid": user_id, "collection": collection_id}
            if records:
                _, replaced_size = self._delete_counted(connection, ("ids",), {
                    **owner, "ids": [record.id for record in records]}, few=True)
                rows = [{
                    **owner, "id": record.id, "sortindex": record.sortindex,
                    "parentid": record.parentid, "predecessorid": record.predecessorid,
                    "payload": record.payload, "modified": record.modified,
                    "payload_size": len((record.payload or "").encode("utf-8")),
                    "ttl": record.expires} for record in records]
                self._executemany(connection, schema.INSERT_ITEM, rows)
                lock.add_usage(sum(row["payload_size"] for row in rows) - replaced_size)
            stamp = max([lock.collection_ts or 0, timestamp]
                        + [record.modified or 0 for record in records])
            if stamp != lock.collection_ts:
                lock.record(stamp)
            return stamp

    def purge_expired(self, now_seconds, batch_size=1000):
        """Read a batch of expired keys in expiry order, then delete them in short transactions.

        The keys are grouped by user and collection and deleted by id lists
        (primary-key lookups). Each transaction first locks its users' rows
        in ascending order (writers lock one user, so the two never deadlock)
        and takes about :data:`PURGE_TRANSACTION_SECONDS`: the number of rows
        per transaction adapts to how fast the database deletes them. A row
        rewritten in between (no longer expired) is left alone. Successive
        calls with the same ``now_seconds`` start where the previous stopped
        in the expiry index.
        """
        now_seconds = int(now_seconds)
        floor = self._purge_floor[1] if (self._purge_floor is not None
                                         and self._purge_floor[0] == now_seconds) else 0
        with self._reading() as connection:
            keys = connection.execute(schema.EXPIRED_KEYS, {
                "now_seconds": now_seconds, "floor_ttl": floor,
                "batch_size": int(batch_size)}).all()
        if not keys:
            self._purge_floor = None
            return 0
        by_owner = {}
        for _ttl, user_id, collection_id, item_id in keys:
            by_owner.setdefault((user_id, collection_id), []).append(item_id)
        pieces = [(user_id, collection_id, ids[start:start + _PURGE_ROWS_MAX])
                  for (user_id, collection_id), ids in sorted(by_owner.items())
                  for start in range(0, len(ids), _PURGE_ROWS_MAX)]
        purged = 0
        while pieces:
            transaction, rows = [], 0
            while pieces and rows < self._purge_rows:
                user_id, collection_id, ids = pieces.pop(0)
                room = self._purge_rows - rows
                if len(ids) > room:
                    pieces.insert(0, (user_id, collection_id, ids[room:]))
                    ids = ids[:room]
                transaction.append((user_id, collection_id, ids))
                rows += len(ids)
            count, held = self._purge_transaction(transaction, now_seconds)
            purged += count
            self._adapt_purge_rows(rows, held)
        self._purge_floor = (now_seconds, keys[-1][0])
        return purged

    def _purge_transaction(self, pieces, now_seconds):
        """Delete ``(user, collection, ids)`` pieces in one transaction; subtract their bytes.

        Returns how many rows went and how long the transaction held its
        locks (from when it had them: waiting for them says nothing of the rate).
        """
        freed = {}
        purged = 0
        with self.database.writing(StorageUnavailable) as connection:
            started = time.monotonic()
            if self.database.dialect != "sqlite":  # SQLite: the transaction is the lock
                # A user without a row was deleted meanwhile (with these items)
                # or loaded without one: no writer holds it, the items can go.
                connection.execute(schema.LOCK_USERS, {
                    "userids": sorted({user_id for user_id, _, _ in pieces})}).all()
            for user_id, collection_id, ids in pieces:
                params = {"userid": user_id, "collection": collection_id, "ids": ids,
                          "now_seconds": now_seconds}
                if self._delete_returns():
                    sizes = connection.execute(
                        schema.PURGE_ITEMS_RETURNING_SIZES, params).scalars().all()
                    count, size = len(sizes), sum(sizes)
                else:
                    count, size = connection.execute(schema.PURGEABLE_USAGE, params).one()
                    if count:
                        count = connection.execute(schema.PURGE_ITEMS, params).rowcount
                purged += count
                if size:
                    freed[user_id] = freed.get(user_id, 0) + int(size)
            if freed:
                connection.execute(schema.SUBTRACT_USAGE, [
                    {"k_userid": user_id, "v_bytes": size} for user_id, size in freed.items()])
            held = time.monotonic() - started
        return purged, held

    def _adapt_purge_rows(self, rows, seconds):
        """Aim the next purge transaction at PURGE_TRANSACTION_SECONDS."""
        if rows < self._purge_rows and seconds < PURGE_TRANSACTION_SECONDS:
            return  # a short tail says nothing about the rate
        rate = rows / max(seconds, 1e-4)
        target = int(rate * PURGE_TRANSACTION_SECONDS)
        self._purge_rows = max(_PURGE_ROWS_MIN, min(_PURGE_ROWS_MAX, target,
                                                    self._purge_rows * 2))

    def reclaim_space(self, full=False):
        """SQLite: give free pages back to the file system; other databases reuse them.

        A SQLite file never shrinks by itself. Files created with
        ``auto_vacuum=INCREMENTAL`` (every file this version creates) give
        their free pages back by ``PRAGMA incremental_vacuum`` in steps of
        :data:`_VACUUM_STEP_PAGES` pages, each its own short write transaction,
        then the WAL is checkpointed and emptied. An older file (``auto_vacuum=NONE``)
        can only be switched by a full ``VACUUM``, which rewrites it whole and
        holds the write lock meanwhile: only with ``full``; without it, None.
        """
        if self.database.dialect != "sqlite":
            return None
        with self._reading() as connection:
            mode = connection.exec_driver_sql("PRAGMA auto_vacuum").scalar()
            page_size = connection.exec_driver_sql("PRAGMA page_size").scalar()
            pages_before = connection.exec_driver_sql("PRAGMA page_count").scalar()
        if mode == 0 and not full:
            return None
        with self.database.translating(StorageUnavailable):
            if mode == 0:
                with self.database.writing(StorageUnavailable) as connection:
                    connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
                with self.database.reading(StorageUnavailable) as connection:
                    # VACUUM cannot run inside a transaction; a read connection has none.
                    connection.exec_driver_sql("VACUUM")
            else:
                while True:
                    with self.database.writing(StorageUnavailable) as connection:
                        free = connection.exec_driver_sql("PRAGMA freelist_count").scalar()
                        if not free:
                            break
                        connection.exec_driver_sql(
                            f"PRAGMA incremental_vacuum({_VACUUM_STEP_PAGES})")
            with self._reading() as connection:
                # The pages given back are in the WAL until a checkpoint; TRUNCATE
                # also empties the WAL file, which else keeps its largest size.
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
                pages_after = connection.exec_driver_sql("PRAGMA page_count").scalar()
        return max(0, pages_before - pages_after) * page_size

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
        with self._writing(user_id, None) as lock:
            lock.connection.execute(schema.SET_USER_QUOTA, {
                "k_userid": user_id, "v_quota_kb": quota_kb})


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


def _merge_writes(items):
    """``{id: {field: value}}`` with duplicates merged in order, later values winning."""
    writes = {}
    for item in items:
        fields = writes.setdefault(item.id, {})
        if item.payload is not None:
            fields["payload"] = item.payload
        if item.sortindex is not None:
            fields["sortindex"] = item.sortindex
        if item.parentid is not None:
            fields["parentid"] = item.parentid
        if item.predecessorid is not None:
            fields["predecessorid"] = item.predecessorid
        if item.ttl is not None:
            fields["ttl"] = item.ttl
    return writes
