"""The bundled storage backend: records in SQLite, MySQL/MariaDB or PostgreSQL.

How it keeps the consistency rules of :mod:`syncserver.storage`:

- Every write is one transaction that starts by locking the user's
  ``storage_users`` row (``SELECT ... FOR UPDATE``; on SQLite ``BEGIN
  IMMEDIATE`` already serializes writers). The X-If-Unmodified-Since check,
  the stamp and the write therefore never interleave with another write of
  the same user, while different users never wait for each other.
- ``storage_users.last_modified`` remembers the last stamp given to the user,
  so stamps stay strictly increasing across deletions and clock jumps.
- Collection timestamps live in ``user_collections``, so a collection whose
  items were all deleted stays listed with the deletion's stamp.
- Collection names map to ids in one global table. Names are resolved before
  the user's transaction and cached in-process: ids never change.

The SQL itself (tables and prebuilt statements) is in
:mod:`syncserver.storage.sql_schema`; this module decides when it runs. A
read is one statement; a write is the lock, one read of the stored rows, the
writes and two timestamp updates.
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
    StorageBackend,
    StorageStatistics,
    StorageUnavailable,
    StoredRecord,
    WriteResult,
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
#: Attempts at giving a new collection name an id when other processes race us.
_ALLOCATION_ATTEMPTS = 20


class _UserLock:
    """What a write learned while locking the user: last stamp and collection timestamp."""

    __slots__ = ("collection_id", "collection_ts", "connection", "last_modified", "user_id")

    def __init__(self, connection, user_id, collection_id, last_modified, collection_ts):
        self.connection = connection
        self.user_id = user_id
        self.collection_id = collection_id
        self.last_modified = last_modified
        self.collection_ts = collection_ts

    def next_stamp(self, now):
        """The user's next stamp: ``now``, unless that would not move forward."""
        return max(now, self.last_modified + 1, (self.collection_ts or 0) + 1)

    def record(self, stamp):
        """Make ``stamp`` the collection's timestamp and, if newer, the user's last stamp."""
        params = {"k_userid": self.user_id, "k_collection": self.collection_id}
        if self.collection_id is not None:
            if self.collection_ts is None:
                self.connection.execute(schema.INSERT_COLLECTION_STAMP, {
                    "userid": self.user_id, "collection": self.collection_id, "modified": stamp})
            else:
                self.connection.execute(schema.UPDATE_COLLECTION_STAMP,
                                        dict(params, v_modified=stamp))
            self.collection_ts = stamp
        self.last_modified = max(self.last_modified, stamp)
        self.connection.execute(schema.UPDATE_LAST_MODIFIED,
                                dict(params, v_last_modified=self.last_modified))


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
    def _writing(self, user_id, collection_id, if_unmodified_since=None):
        """One write transaction holding the user's lock; checks the precondition first."""
        try:
            with self.database.writing(StorageUnavailable) as connection:
                lock = self._lock_user(connection, user_id, collection_id)
                if (if_unmodified_since is not None and lock.collection_ts is not None
                        and lock.collection_ts > if_unmodified_since):
                    raise PreconditionFailed(lock.collection_ts)
                yield lock
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
        if len(row) == 2:
            collection_ts = row[1]
        elif collection_id is not None:
            collection_ts = connection.execute(schema.COLLECTION_TIMESTAMP, params).scalar()
        else:
            collection_ts = None
        return _UserLock(connection, user_id, collection_id, row[0], collection_ts)

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
        columns = schema.RECORD_COLUMNS if full else ("id",)
        with self._reading() as connection:
            rows = connection.execute(schema.select_items(columns, shape, True), params).all()
        if not full:
            return [{"id": row[0]} for row in rows]
        return _records(rows)

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

    def set_items(self, user_id, collection, items, now, if_unmodified_since=None):
        """Lock + precondition, one SELECT of the stored rows, one INSERT, grouped UPDATEs."""
        writes = _merge_writes(items)
        collection_id = self._collection_id(collection, create=True)
        with self._writing(user_id, collection_id, if_unmodified_since) as lock:
            if not writes:
                return WriteResult(now, {})
            connection = lock.connection
            now_seconds = int(time.time())
            owner = {"userid": user_id, "collection": collection_id}
            if len(writes) == 1:
                (only_id,) = writes
                rows = connection.execute(schema.EXISTING_ITEM, {**owner, "id": only_id}).all()
            else:
                rows = connection.execute(
                    schema.EXISTING_ITEMS, {**owner, "ids": list(writes)}).all()
            stored = {item_id: (modified, ttl) for item_id, modified, ttl in rows}
            stamped = any("payload" in fields for fields in writes.values())
            stamp = lock.next_stamp(now) if stamped else now
            inserts, replaced, updates, modified = [], [], {}, {}
            for item_id, fields in writes.items():
                previous = stored.get(item_id)
                payload = fields.get("payload")
                if previous is None or previous[1] <= now_seconds:
                    # New, or expired and so replaced whole.
                    if previous is not None:
                        replaced.append(item_id)
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
                    modified[item_id] = row["modified"]
                    continue
                values = {"v_" + name: fields[name] for name in _METADATA_FIELDS if name in fields}
                if "ttl" in fields:
                    values["v_ttl"] = now_seconds + fields["ttl"]
                if payload is not None:
                    values.update(v_payload=payload, v_modified=stamp,
                                  v_payload_size=len(payload.encode("utf-8")))
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
            if stamped:
                lock.record(stamp)
            return WriteResult(stamp, modified)

    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None):
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            return None
        with self._writing(user_id, collection_id, if_unmodified_since) as lock:
            deleted = lock.connection.execute(schema.delete_items(("ids",)), {
                "userid": user_id, "collection": collection_id, "ids": [item_id]}).rowcount
            return self._stamp_deletion(lock, deleted, now)

    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None):
        """Filters only: one DELETE. With limit/offset: select the keys, then delete them."""
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
            deleted = connection.execute(schema.delete_items(filters), params).rowcount
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
                connection.execute(schema.delete_items(("ids",)), {
                    **owner, "ids": [record.id for record in records]})
                self._executemany(connection, schema.INSERT_ITEM, [{
                    **owner, "id": record.id, "sortindex": record.sortindex,
                    "parentid": record.parentid, "predecessorid": record.predecessorid,
                    "payload": record.payload, "modified": record.modified,
                    "payload_size": len((record.payload or "").encode("utf-8")),
                    "ttl": record.expires} for record in records])
            stamp = max([lock.collection_ts or 0, timestamp]
                        + [record.modified or 0 for record in records])
            if stamp != lock.collection_ts:
                lock.record(stamp)
            return stamp

    def purge_expired(self, now_seconds, batch_size=1000):
        """Select a batch of expired keys, then delete them user by user.

        Each user's rows go in a short transaction that first takes the user's
        lock, in the same order as writers, so purging never deadlocks with
        them. A row rewritten in between (so no longer expired) is left alone.
        """
        params = {"now_seconds": int(now_seconds), "batch_size": int(batch_size)}
        by_user = {}
        with self._reading() as connection:
            for user_id, collection_id, item_id in connection.execute(
                    schema.EXPIRED_KEYS, params).all():
                by_user.setdefault(user_id, []).append((user_id, collection_id, item_id))
        purged = 0
        for user_id, keys in by_user.items():
            with self.database.writing(StorageUnavailable) as connection:
                # No row: the user was deleted meanwhile (the delete already took
                # these items), or the items were loaded without one; either
                # way no writer holds the row, and the keys can go.
                connection.execute(schema.LOCK_USER, {"userid": user_id}).first()
                purged += connection.execute(schema.PURGE_KEYS, dict(params, keys=keys)).rowcount
        return purged

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
