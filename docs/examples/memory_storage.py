"""An example storage plugin: every record in this process's memory.

It is the smallest complete :class:`~syncserver.storage.StorageBackend`, written
to be read next to ``docs/plugins.rst``. It loses everything on restart and
each server process has its own copy, so it suits tests and demos, not
production. Use it with::

    [app:main]
    use = egg:syncserver
    storage.backend = memory_storage.MemoryStorage

(with ``docs/examples`` on ``PYTHONPATH``). The project's conformance suite
runs against it in ``docs/examples/test_memory_storage.py``.

It implements the whole interface, optional parts included: Sync 1.5's
write rules and batch uploads, per-user quotas (checked inside the write,
under its lock, against the bytes of every stored payload, expired ones
included until purged), tombstones of deleted users, statistics and expiry
hints. It uses the interface's default ``stream_items`` (every answer is in
memory anyway). One lock makes every operation atomic and ordered.
"""

import dataclasses
import secrets
import threading
import time

from syncserver.storage import (
    DELETED_USER_RETENTION_SECONDS,
    NEVER_EXPIRES,
    SYNC11_WRITES,
    SYNC15_BATCH_COMMIT,
    BatchNotFound,
    BatchTooLarge,
    CollectionStatistics,
    PreconditionFailed,
    StorageBackend,
    StorageStatistics,
    StoredRecord,
    UserDeleted,
    WriteResult,
    quota_left_kb,
)

_METADATA = ("sortindex", "parentid", "predecessorid")
_FIELDS = ("payload",) + _METADATA + ("ttl",)


def _size(payload):
    return len(payload.encode("utf-8")) if payload is not None else 0


def _merge(items, into=None):
    """``{id: {field: value}}`` from ItemWrites, in order; later non-null fields win."""
    merged = {} if into is None else into
    for item in items:
        fields = merged.setdefault(item.id, {})
        fields.update({name: getattr(item, name) for name in _FIELDS
                       if getattr(item, name) is not None})
    return merged


@dataclasses.dataclass
class _Item:
    payload: str | None = None
    modified: int | None = None
    sortindex: int | None = None
    parentid: str | None = None
    predecessorid: str | None = None
    expires: int = NEVER_EXPIRES  # epoch seconds

    def live(self, now_seconds):
        return self.expires > now_seconds

    def record(self, item_id, full):
        if not full:
            return {"id": item_id}
        fields = dataclasses.asdict(self)
        del fields["expires"]
        return {"id": item_id, **{name: value for name, value in fields.items()
                                  if value is not None}}


@dataclasses.dataclass
class _User:
    items: dict = dataclasses.field(default_factory=dict)       # collection -> {id: _Item}
    timestamps: dict = dataclasses.field(default_factory=dict)  # collection -> stamp
    last_stamp: int = 0
    quota_kb: int | None = None
    deleted_at: int | None = None  # epoch seconds: a tombstone

    def usage(self):
        """Bytes of every stored payload, expired ones included (what quotas count)."""
        return sum(_size(item.payload) for items in self.items.values()
                   for item in items.values())

    def next_stamp(self, now, collection=None):
        """``now``, moved past every stamp this user was given (the interface's rule)."""
        return max(now, self.last_stamp + 1, self.timestamps.get(collection, 0) + 1)

    def record(self, stamp, collection=None):
        if collection is not None:
            self.timestamps[collection] = stamp
        self.last_stamp = max(self.last_stamp, stamp)


@dataclasses.dataclass
class _Batch:
    user_id: int
    collection: str
    expires: int  # centiseconds
    staged: dict = dataclasses.field(default_factory=dict)  # id -> {field: value}


class MemoryStorage(StorageBackend):
    """Records in dictionaries; one lock makes every write atomic and ordered."""

    #: This plugin reads no ``storage.*`` keys of its own.
    extra_settings = ()

    def __init__(self):
        self._users = {}
        self._batches = {}
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings):
        return cls()

    def is_healthy(self):
        return True

    # -- helpers --------------------------------------------------------------

    def _user(self, user_id, refuse_deleted=True):
        user = self._users.setdefault(user_id, _User())
        if refuse_deleted and user.deleted_at is not None:
            raise UserDeleted(f"user {user_id} was deleted")
        return user

    def _live_items(self, user_id, collection):
        now_seconds = int(time.time())
        items = self._users.get(user_id, _User()).items.get(collection, {})
        return {item_id: item for item_id, item in items.items() if item.live(now_seconds)}

    @staticmethod
    def _check(stamp, if_unmodified_since):
        if if_unmodified_since is not None and stamp is not None and stamp > if_unmodified_since:
            raise PreconditionFailed(stamp)

    @staticmethod
    def _select(items, query):
        """Apply an ItemQuery's filters, order and paging to ``{id: _Item}``."""
        chosen = []
        for item_id, item in items.items():
            modified = item.modified
            if query.ids is not None and item_id not in query.ids:
                continue
            if query.parentid is not None and item.parentid != query.parentid:
                continue
            if query.predecessorid is not None and item.predecessorid != query.predecessorid:
                continue
            if query.newer is not None and not (modified or 0) > query.newer:
                continue
            if query.older is not None and not (modified is not None and modified < query.older):
                continue
            if query.modified_at_least is not None and not (
                    modified is not None and modified >= query.modified_at_least):
                continue
            if query.modified_at_most is not None and not (
                    modified is not None and modified <= query.modified_at_most):
                continue
            if query.index_above is not None and not (
                    item.sortindex is not None and item.sortindex > query.index_above):
                continue
            if query.index_below is not None and not (
                    item.sortindex is not None and item.sortindex < query.index_below):
                continue
            chosen.append((item_id, item))
        # The id breaks ties so that paging with limit/offset is deterministic.
        chosen.sort(key=lambda pair: pair[0])
        if query.sort == "oldest":
            chosen.sort(key=lambda pair: pair[1].modified or 0)
        elif query.sort == "newest":
            chosen.sort(key=lambda pair: (pair[1].modified or 0, pair[0]), reverse=True)
        elif query.sort == "index":
            chosen.sort(key=lambda pair: (pair[1].sortindex or 0, pair[0]), reverse=True)
        start = max(query.offset or 0, 0)
        end = None if query.limit is None else start + max(query.limit, 0)
        return chosen[start:end]

    @staticmethod
    def _apply(stored, writes, stamp, rules):
        """Write ``writes`` (``{id: fields}``) into ``stored``; return (modified, stamped)."""
        now_seconds = int(time.time())
        ttl_base = min(stamp // 100, now_seconds) if rules.ttl_from_stamp else now_seconds
        modified, stamped = {}, False
        for item_id, fields in writes.items():
            item = stored.get(item_id)
            new = item is None or not item.live(now_seconds)
            if new:  # new, or expired and replaced whole
                item = stored[item_id] = _Item(payload=rules.new_item_payload)
            for name in ("payload",) + _METADATA:
                if name in fields:
                    setattr(item, name, fields[name])
            if "ttl" in fields:
                item.expires = ttl_base + fields["ttl"]
            if ("payload" in fields or rules.stamp_every_item
                    or (rules.stamp_on_sortindex and "sortindex" in fields)
                    or (new and rules.new_item_payload is not None)):
                item.modified = stamp
                stamped = True
            modified[item_id] = item.modified
        return modified, stamped

    # -- reads ----------------------------------------------------------------

    def get_storage_timestamp(self, user_id):
        with self._lock:
            user = self._users.get(user_id)
            return 0 if user is None or user.deleted_at is not None else user.last_stamp

    def get_collection_timestamps(self, user_id):
        with self._lock:
            return dict(self._users.get(user_id, _User()).timestamps)

    def get_collection_timestamp(self, user_id, collection):
        with self._lock:
            return self._users.get(user_id, _User()).timestamps.get(collection)

    def get_collection_counts(self, user_id):
        return self._per_collection(user_id, len)

    def get_collection_usage(self, user_id):
        return self._per_collection(user_id, lambda items: sum(
            _size(item.payload) for item in items.values()))

    def _per_collection(self, user_id, measure):
        with self._lock:
            result = {}
            for collection in self._users.get(user_id, _User()).items:
                live = self._live_items(user_id, collection)
                if live:
                    result[collection] = measure(live)
            return result

    def get_total_usage(self, user_id):
        return sum(self.get_collection_usage(user_id).values())

    def get_next_expiry(self, user_id, collection=None):
        with self._lock:
            user = self._users.get(user_id, _User())
            names = [collection] if collection is not None else list(user.items)
            expiries = [item.expires for name in names
                        for item in self._live_items(user_id, name).values()]
            return min(expiries, default=None)

    def get_items(self, user_id, collection, query, full):
        with self._lock:
            selected = self._select(self._live_items(user_id, collection), query)
            return [item.record(item_id, full) for item_id, item in selected]

    def get_item(self, user_id, collection, item_id):
        with self._lock:
            item = self._live_items(user_id, collection).get(item_id)
            return None if item is None else item.record(item_id, True)

    # -- writes ---------------------------------------------------------------

    def set_items(self, user_id, collection, items, now, if_unmodified_since=None,
                  quota_kb=None, *, rules=SYNC11_WRITES, precondition="collection"):
        writes = _merge(items)
        if precondition == "item" and len(writes) != 1:
            raise ValueError('precondition="item" needs exactly one item')
        with self._lock:
            user = self._user(user_id)
            quota_left = self._quota_left(user, quota_kb)
            stored = user.items.setdefault(collection, {})
            if precondition == "item":
                (item_id,) = writes
                item = stored.get(item_id)
                live = item is not None and item.live(int(time.time()))
                self._check((item.modified or 0) if live else 0, if_unmodified_since)
            else:
                self._check(user.timestamps.get(collection), if_unmodified_since)
            stamp = user.next_stamp(now, collection)
            modified, stamped = self._apply(stored, writes, stamp, rules)
            if not (stamped or rules.stamp_collection_always):
                return WriteResult(now, modified, quota_left)
            user.record(stamp, collection)
            return WriteResult(stamp, modified, quota_left)

    @staticmethod
    def _quota_left(user, quota_kb, extra_bytes=0):
        if quota_kb is None:
            return None
        return quota_left_kb(quota_kb, user.quota_kb, user.usage() + extra_bytes)

    def check_quota(self, user_id, quota_kb):
        with self._lock:
            return self._quota_left(self._users.get(user_id, _User()), quota_kb)

    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None, *,
                    precondition="collection"):
        with self._lock:
            user = self._user(user_id)
            stored = user.items.get(collection, {})
            if precondition == "item":
                item = stored.get(item_id)
                if item is None or not item.live(int(time.time())):
                    return None
                self._check(item.modified or 0, if_unmodified_since)
            else:
                self._check(user.timestamps.get(collection), if_unmodified_since)
            if stored.pop(item_id, None) is None:
                return None
            return self._stamp(user, collection, now)

    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None, *,
                     stamp_always=False):
        with self._lock:
            user = self._user(user_id)
            self._check(user.timestamps.get(collection), if_unmodified_since)
            stored = user.items.get(collection, {})
            doomed = [item_id for item_id, _ in self._select(stored, query)]
            if not doomed:
                if stamp_always and collection in user.timestamps:
                    return self._stamp(user, collection, now)
                return None
            for item_id in doomed:
                del stored[item_id]
            return self._stamp(user, collection, now)

    @staticmethod
    def _stamp(user, collection, now):
        stamp = user.next_stamp(now, collection)
        user.record(stamp, collection)
        return stamp

    def delete_collection(self, user_id, collection, now, if_unmodified_since=None):
        with self._lock:
            user = self._user(user_id)
            self._check(user.timestamps.get(collection), if_unmodified_since)
            stamp = user.next_stamp(now, collection)
            user.items.pop(collection, None)
            user.timestamps.pop(collection, None)
            self._drop_batches(user_id, collection)
            user.record(stamp)
            return stamp

    def delete_storage(self, user_id, now, if_unmodified_since=None):
        with self._lock:
            user = self._user(user_id)
            self._check(user.last_stamp, if_unmodified_since)
            user.items.clear()
            user.timestamps.clear()
            self._drop_batches(user_id)
            stamp = user.next_stamp(now)
            user.record(stamp)
            return stamp

    def delete_user(self, user_id):
        with self._lock:
            last_stamp = self._users.get(user_id, _User()).last_stamp
            self._users[user_id] = _User(last_stamp=last_stamp, deleted_at=int(time.time()))
            self._drop_batches(user_id)

    def _drop_batches(self, user_id, collection=None):
        for batch_id, batch in list(self._batches.items()):
            if batch.user_id == user_id and collection in (None, batch.collection):
                del self._batches[batch_id]

    # -- batches ----------------------------------------------------------------

    def create_batch(self, user_id, collection, now, lifetime_seconds):
        with self._lock:
            self._user(user_id)
            batch_id = secrets.token_urlsafe(18)
            self._batches[batch_id] = _Batch(user_id, collection,
                                             now + int(lifetime_seconds) * 100)
            return batch_id

    def _open_batch(self, user_id, collection, batch_id, now):
        batch = self._batches.get(batch_id) if isinstance(batch_id, str) else None
        if (batch is None or batch.user_id != user_id or batch.collection != collection
                or batch.expires <= now):
            raise BatchNotFound(f"no open batch {batch_id!r} for this user and collection")
        return batch

    @staticmethod
    def _sized(staged, max_total_records, max_total_bytes):
        """The payload bytes ``staged`` holds; BatchTooLarge past a limit."""
        records = len(staged)
        total = sum(_size(fields.get("payload")) for fields in staged.values())
        if ((max_total_records is not None and records > max_total_records)
                or (max_total_bytes is not None and total > max_total_bytes)):
            raise BatchTooLarge(records, total)
        return total

    def append_to_batch(self, user_id, collection, batch_id, items, now, *, quota_kb=None,
                        max_total_records, max_total_bytes):
        with self._lock:
            user = self._user(user_id)
            batch = self._open_batch(user_id, collection, batch_id, now)
            staged = _merge(items, {key: dict(fields) for key, fields in batch.staged.items()})
            total = self._sized(staged, max_total_records, max_total_bytes)
            self._quota_left(user, quota_kb, total)
            batch.staged = staged

    def commit_batch(self, user_id, collection, batch_id, items, now, *,
                     if_unmodified_since=None, quota_kb=None, max_total_records,
                     max_total_bytes):
        with self._lock:
            user = self._user(user_id)
            self._check(user.timestamps.get(collection), if_unmodified_since)
            batch = self._open_batch(user_id, collection, batch_id, now)
            writes = _merge(items, {key: dict(fields) for key, fields in batch.staged.items()})
            total = self._sized(writes, max_total_records, max_total_bytes)
            quota_left = self._quota_left(user, quota_kb, total)
            stamp = user.next_stamp(now, collection)
            modified, _ = self._apply(user.items.setdefault(collection, {}), writes, stamp,
                                      SYNC15_BATCH_COMMIT)
            user.record(stamp, collection)
            del self._batches[batch_id]
            return WriteResult(stamp, modified, quota_left)

    # -- export and import (admin commands and migrations) ---------------------

    def export_records(self, user_id, collection):
        with self._lock:
            live = self._live_items(user_id, collection)
            return [StoredRecord(id=item_id, **dataclasses.asdict(item))
                    for item_id, item in sorted(live.items())]

    def restore_records(self, user_id, collection, records, timestamp):
        with self._lock:
            user = self._user(user_id, refuse_deleted=False)
            user.deleted_at = None
            stored = user.items.setdefault(collection, {})
            stamp = max(user.timestamps.get(collection, 0), timestamp)
            for record in records:
                fields = dataclasses.asdict(record)
                item_id = fields.pop("id")
                stored[item_id] = _Item(**fields)
                stamp = max(stamp, record.modified or 0)
            user.record(stamp, collection)
            return stamp

    # -- maintenance -------------------------------------------------------------

    def purge_expired(self, now_seconds, batch_size=1000):
        with self._lock:
            purged = 0
            for user in self._users.values():
                for items in user.items.values():
                    for item_id in [key for key, item in items.items()
                                    if not item.live(now_seconds)][:batch_size - purged]:
                        del items[item_id]
                        purged += 1
            for batch_id in [key for key, batch in self._batches.items()
                             if batch.expires <= now_seconds * 100][:batch_size - purged]:
                del self._batches[batch_id]
                purged += 1
            cutoff = now_seconds - DELETED_USER_RETENTION_SECONDS
            for user_id in [key for key, user in self._users.items()
                            if user.deleted_at is not None
                            and user.deleted_at <= cutoff][:batch_size - purged]:
                del self._users[user_id]
                purged += 1
            return purged

    def get_user_quota(self, user_id):
        with self._lock:
            return self._users.get(user_id, _User()).quota_kb

    def set_user_quota(self, user_id, quota_kb):
        with self._lock:
            self._user(user_id).quota_kb = quota_kb

    def count_expired(self, now_seconds):
        with self._lock:
            return sum(1 for user in self._users.values() for items in user.items.values()
                       for item in items.values() if not item.live(now_seconds))

    def get_statistics(self, now_seconds):
        with self._lock:
            per_collection, owners = {}, set()
            for user_id, user in self._users.items():
                for name, items in user.items.items():
                    live = [item for item in items.values() if item.live(now_seconds)]
                    if not live:
                        continue
                    owners.add(user_id)
                    users, count, size = per_collection.get(name, (0, 0, 0))
                    per_collection[name] = (users + 1, count + len(live),
                                            size + sum(_size(item.payload) for item in live))
            collections = {name: CollectionStatistics(users=u, items=n, bytes=b)
                           for name, (u, n, b) in sorted(per_collection.items())}
            return StorageStatistics(
                users=len(owners), items=sum(c.items for c in collections.values()),
                bytes=sum(c.bytes for c in collections.values()),
                expired_items=self.count_expired(now_seconds), collections=collections)
