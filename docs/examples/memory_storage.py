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

It checks the quota inside ``set_items`` (under its lock) against the bytes
of every stored payload, expired ones included until purged, as the
interface describes; it has no per-user quotas and uses the interface's
default ``stream_items`` (every answer is in memory anyway).
"""

import dataclasses
import threading
import time

from syncserver.storage import (
    NEVER_EXPIRES,
    PreconditionFailed,
    StorageBackend,
    StoredRecord,
    WriteResult,
    quota_left_kb,
)

_METADATA = ("sortindex", "parentid", "predecessorid")


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

    def usage(self):
        """Bytes of every stored payload, expired ones included (what quotas count)."""
        return sum(len((item.payload or "").encode("utf-8"))
                   for items in self.items.values() for item in items.values())

    def next_stamp(self, now, collection=None):
        """``now``, moved past every stamp this user was given (the interface's rule)."""
        stamp = max(now, self.last_stamp + 1, self.timestamps.get(collection, 0) + 1)
        self.last_stamp = stamp
        return stamp


class MemoryStorage(StorageBackend):
    """Records in dictionaries; one lock makes every write atomic and ordered."""

    #: This plugin reads no ``storage.*`` keys of its own.
    extra_settings = ()

    def __init__(self):
        self._users = {}
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings):
        return cls()

    def is_healthy(self):
        return True

    # -- helpers --------------------------------------------------------------

    def _user(self, user_id):
        return self._users.setdefault(user_id, _User())

    def _live_items(self, user_id, collection):
        now_seconds = int(time.time())
        items = self._users.get(user_id, _User()).items.get(collection, {})
        return {item_id: item for item_id, item in items.items() if item.live(now_seconds)}

    def _check_precondition(self, user, collection, if_unmodified_since):
        stamp = user.timestamps.get(collection)
        if if_unmodified_since is not None and stamp is not None and stamp > if_unmodified_since:
            raise PreconditionFailed(stamp)

    @staticmethod
    def _select(items, query):
        """Apply an ItemQuery's filters, order and paging to ``{id: _Item}``."""
        chosen = []
        for item_id, item in items.items():
            if query.ids is not None and item_id not in query.ids:
                continue
            if query.parentid is not None and item.parentid != query.parentid:
                continue
            if query.predecessorid is not None and item.predecessorid != query.predecessorid:
                continue
            if query.newer is not None and not (item.modified or 0) > query.newer:
                continue
            if query.older is not None and not (
                    item.modified is not None and item.modified < query.older):
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

    # -- reads ----------------------------------------------------------------

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
            len((item.payload or "").encode("utf-8")) for item in items.values()))

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
                  quota_kb=None):
        with self._lock:
            user = self._user(user_id)
            quota_left = self.check_quota(user_id, quota_kb)
            self._check_precondition(user, collection, if_unmodified_since)
            if not items:
                return WriteResult(now, {}, quota_left)
            stamped = any(item.payload is not None for item in items)
            stamp = user.next_stamp(now, collection) if stamped else now
            now_seconds = int(time.time())
            stored = user.items.setdefault(collection, {})
            modified = {}
            for write in items:
                item = stored.get(write.id)
                if item is None or not item.live(now_seconds):
                    item = stored[write.id] = _Item()  # new, or expired and replaced whole
                if write.payload is not None:
                    item.payload, item.modified = write.payload, stamp
                for name in _METADATA:
                    if getattr(write, name) is not None:
                        setattr(item, name, getattr(write, name))
                if write.ttl is not None:
                    item.expires = now_seconds + write.ttl
                modified[write.id] = item.modified
            if stamped:
                user.timestamps[collection] = stamp
            return WriteResult(stamp, modified, quota_left)

    def check_quota(self, user_id, quota_kb):
        if quota_kb is None:
            return None
        with self._lock:
            return quota_left_kb(quota_kb, None, self._users.get(user_id, _User()).usage())

    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None):
        with self._lock:
            user = self._user(user_id)
            self._check_precondition(user, collection, if_unmodified_since)
            if user.items.get(collection, {}).pop(item_id, None) is None:
                return None
            return self._stamp(user, collection, now)

    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None):
        with self._lock:
            user = self._user(user_id)
            self._check_precondition(user, collection, if_unmodified_since)
            stored = user.items.get(collection, {})
            doomed = [item_id for item_id, _ in self._select(stored, query)]
            if not doomed:
                return None
            for item_id in doomed:
                del stored[item_id]
            return self._stamp(user, collection, now)

    @staticmethod
    def _stamp(user, collection, now):
        stamp = user.next_stamp(now, collection)
        user.timestamps[collection] = stamp
        return stamp

    def delete_storage(self, user_id, now):
        with self._lock:
            user = self._user(user_id)
            if not user.items and not user.timestamps:
                return None
            user.items.clear()
            user.timestamps.clear()
            return user.next_stamp(now)

    def delete_user(self, user_id):
        with self._lock:
            self._users.pop(user_id, None)

    # -- export and import (admin commands and migrations) ---------------------

    def export_records(self, user_id, collection):
        with self._lock:
            live = self._live_items(user_id, collection)
            return [StoredRecord(id=item_id, **dataclasses.asdict(item))
                    for item_id, item in sorted(live.items())]

    def restore_records(self, user_id, collection, records, timestamp):
        with self._lock:
            user = self._user(user_id)
            stored = user.items.setdefault(collection, {})
            stamp = max(user.timestamps.get(collection, 0), timestamp)
            for record in records:
                fields = dataclasses.asdict(record)
                item_id = fields.pop("id")
                stored[item_id] = _Item(**fields)
                stamp = max(stamp, record.modified or 0)
            user.timestamps[collection] = stamp
            user.last_stamp = max(user.last_stamp, stamp)
            return stamp

    def purge_expired(self, now_seconds, batch_size=1000):
        with self._lock:
            purged = 0
            for user in self._users.values():
                for items in user.items.values():
                    for item_id in [key for key, item in items.items()
                                    if not item.live(now_seconds)][:batch_size - purged]:
                        del items[item_id]
                        purged += 1
            return purged
