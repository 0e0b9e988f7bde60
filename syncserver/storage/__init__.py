"""The storage plugin interface.

Every storage backend (the bundled SQL one, the Redis cache wrapper, a
user's own class) implements :class:`StorageBackend`. Controllers talk only to
this interface, so a caller never needs a backend's source. The values it
takes and returns (:mod:`syncserver.storage.values`) and the errors it
raises (:mod:`syncserver.storage.errors`) are imported from here too.

Conventions used by every method:

- ``user_id`` is an integer. Sync 1.1 passes the id given by the
  authentication backend (positive). Sync 1.5 passes
  :func:`sync15_user_id` of the token's uid, the uid negated: a 1.5 uid and
  a 1.1 account therefore never see each other's records, quotas, batches
  or stamps, although they share the tables.
- ``collection`` is a validated name matching ``[a-zA-Z0-9._-]{1,32}``.
- Timestamps are **integers counting centiseconds** since the epoch
  (``1370000000.10`` s is ``137000000010``); no floats anywhere.
- A *record* returned by a read is a dict with ``"id"`` and, for full reads,
  any of ``"modified"`` (int centiseconds), ``"sortindex"`` (int),
  ``"payload"``, ``"parentid"``, ``"predecessorid"`` (str) whose value is not
  null. ``ttl`` and sizes are never returned.
- Expired items (``ttl`` in the past) are invisible to every read at once, yet
  still count for collection timestamps until purged. A write treats an
  expired item as absent: it is replaced whole, never brought back.

Consistency rules every backend must keep (the conformance suite in
:mod:`syncserver.testing` checks them):

- Each write is stamped with ``T = max(now, last stamp given to this user +
  1)``: a user's timestamps never go backwards (not even after a deletion of
  a collection or of everything) and a write is always strictly newer than
  the collection's previous timestamp. The last stamp given out is the
  user's *storage timestamp* (:meth:`StorageBackend.get_storage_timestamp`).
- ``if_unmodified_since`` is checked against the target (the collection,
  the one item, or the whole storage) in the same transaction as the write,
  so of racing writers exactly one wins.
- Every write is one transaction: all of it is applied or none, and a batch
  commit makes the whole batch visible at once with one timestamp.
- How a write stamps items and the collection is chosen by its
  :class:`WriteRules`: :data:`SYNC11_WRITES` (the default) or the Sync 1.5
  rules :data:`SYNC15_WRITES` and :data:`SYNC15_BATCH_COMMIT`.

Quota and usage:

- A write is refused with :class:`QuotaExceeded` when the user had no quota
  left *before* it (so the write that crosses the limit is accepted, as in
  Sync 1.1), checked in the write's own transaction. A batch append or
  commit also counts what the batch stages and brings (as Sync 1.5 servers
  do). The quota that applies is the user's own
  (:meth:`StorageBackend.set_user_quota`) or else the default the caller
  passes (``storage.quota_size``).
- The usage a write is checked against is the bytes (UTF-8) of every stored
  payload of the user, **expired items included until they are purged**:
  the bundled backend keeps it as a running total that every write, delete,
  purge and restore adjusts, so a write never sums the user's items. An
  expired item's bytes are freed by :meth:`StorageBackend.purge_expired`, or
  by a write that replaces it.
- :meth:`StorageBackend.get_total_usage` (``info/quota``) reports live items
  only, as it always has: right after items expire it can be lower than the
  usage a write is checked against, until the next purge.

Deleted users: :meth:`StorageBackend.delete_user` leaves a tombstone, and
every later write for that id raises :class:`UserDeleted` (reads see
nothing), so that a request already past authentication cannot bring a
deleted account's rows back. Tombstones go after
:data:`DELETED_USER_RETENTION_SECONDS` (:meth:`StorageBackend.purge_expired`):
account ids are never reused by the authentication backends and the token
server, so by then no request can still carry the old id.
:meth:`StorageBackend.restore_records` (an import to that id) clears it.

Optional capabilities (batches, per-user quotas, statistics, expiry hints)
raise :class:`syncserver.errors.NotSupported` unless a backend implements
them; callers answer as a server without the capability would.

Multi-record reads that may be large go through
:meth:`StorageBackend.stream_items`, which hands the records out in chunks
(:class:`RecordStream`) so that a server's memory does not grow with the
collection.
"""

import abc

from syncserver.errors import NotSupported
from syncserver.plugins import Plugin
from syncserver.storage.errors import (
    BatchNotFound,
    BatchTooLarge,
    ConflictError,
    PreconditionFailed,
    QuotaExceeded,
    StorageError,
    StorageUnavailable,
    UserDeleted,
)
from syncserver.storage.values import (
    NEVER_EXPIRES,
    SYNC11_WRITES,
    SYNC15_BATCH_COMMIT,
    SYNC15_WRITES,
    CollectionStatistics,
    ItemQuery,
    ItemWrite,
    RecordStream,
    StorageStatistics,
    StoredRecord,
    WriteResult,
    WriteRules,
)

__all__ = [
    "DELETED_USER_RETENTION_SECONDS",
    "NEVER_EXPIRES",
    "SYNC11_WRITES",
    "SYNC15_BATCH_COMMIT",
    "SYNC15_WRITES",
    "BatchNotFound",
    "BatchTooLarge",
    "CollectionStatistics",
    "ConflictError",
    "ItemQuery",
    "ItemWrite",
    "PreconditionFailed",
    "QuotaExceeded",
    "RecordStream",
    "StorageBackend",
    "StorageError",
    "StorageStatistics",
    "StorageUnavailable",
    "StoredRecord",
    "UserDeleted",
    "WriteResult",
    "WriteRules",
    "quota_left_kb",
    "sync15_user_id",
]
#: How long a deleted user's tombstone refuses writes before purge_expired removes it.
DELETED_USER_RETENTION_SECONDS = 30 * 86400


def sync15_user_id(uid):
    """The storage user id of Sync 1.5 uid ``uid``: ``-uid``.

    Sync 1.1 accounts have positive ids, so a 1.5 uid and a 1.1 account never
    share records. This is the one definition; the tokenserver and the 1.5
    controller both use it.
    """
    return -int(uid)


def quota_left_kb(default_quota_kb, own_quota_kb, used_bytes):
    """KB left before a write (``None``: no quota applies); raises :class:`QuotaExceeded`.

    The one rule every backend applies: the user's own quota (``None``: not
    set) wins over ``default_quota_kb``; a quota of 0 means none; a user with
    nothing left (``<= 0``) is refused.
    """
    quota = default_quota_kb if own_quota_kb is None else own_quota_kb
    if not quota:
        return None
    left = quota - max(used_bytes, 0) / 1024.0
    if left <= 0:
        raise QuotaExceeded(quota, used_bytes)
    return left


class StorageBackend(Plugin, abc.ABC):
    """What a storage backend must provide. See the module docstring for conventions.

    A backend class is named in ``storage.backend`` (alias or dotted path) and
    built with :meth:`from_settings`. Every method may raise
    :class:`StorageUnavailable` when its service is down; every write may
    raise :class:`UserDeleted` for a deleted user.
    """

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings):
        """Build the backend from a :class:`syncserver.settings.StorageSettings`.

        Raise :class:`syncserver.errors.ConfigError` naming the key for a bad
        value. Must not do slow work: the server starts with its services
        down and answers 503 until they come back.
        """

    @abc.abstractmethod
    def is_healthy(self):
        """Run a trivial real query; return True, or False when the service is down."""

    def optional_dependencies(self):
        """``{name: check}`` of services this backend uses but can serve without (a cache).

        Each ``check()`` returns True when its service answers. The heartbeat
        reports them, and one that is down makes it "degraded", not 503. The
        default: none.
        """
        return {}

    # -- reads ------------------------------------------------------------------

    @abc.abstractmethod
    def get_storage_timestamp(self, user_id):
        """Return the user's storage timestamp (int centiseconds), 0 when none.

        The last stamp handed out to the user by any write or deletion (so it
        moves forward when a collection or everything is deleted, and never
        back); 0 for a user never written or deleted. Sync 1.5's
        ``X-Last-Modified`` of ``info/*`` and the root.
        """

    @abc.abstractmethod
    def get_collection_timestamps(self, user_id):
        """Return ``{collection: timestamp}`` for every collection ever written.

        A collection stays listed (with the time of the deletion) after its
        items are deleted by :meth:`delete_items`; :meth:`delete_collection`
        and :meth:`delete_storage` forget it.
        """

    @abc.abstractmethod
    def get_collection_timestamp(self, user_id, collection):
        """Return the collection's timestamp, or ``None`` if it is not listed."""

    @abc.abstractmethod
    def get_collection_counts(self, user_id):
        """Return ``{collection: number of live items}`` for collections with any."""

    @abc.abstractmethod
    def get_collection_usage(self, user_id):
        """Return ``{collection: bytes of live payloads}`` (UTF-8) for collections with any."""

    @abc.abstractmethod
    def get_total_usage(self, user_id):
        """Return the bytes (UTF-8) of all the user's live payloads, an int."""

    def get_next_expiry(self, user_id, collection=None):
        """Return when the next of the user's live items expires (epoch seconds), or ``None``.

        Only items of ``collection`` count when it is given. Counts, usage and
        reads stay what they are until then (or until a write), which lets a
        cache keep them. Optional: the default raises
        :class:`~syncserver.errors.NotSupported`, and such answers are then
        not cached.
        """
        raise NotSupported(f"{type(self).__name__} cannot tell when items expire")

    @abc.abstractmethod
    def get_items(self, user_id, collection, query, full):
        """Return the live items matching ``query`` (an :class:`ItemQuery`), a list of records.

        With ``full`` false each record is ``{"id": ...}`` only; with ``full``
        true it carries every non-null field. An unknown collection gives ``[]``.
        """

    def stream_items(self, user_id, collection, query, full):
        """The records :meth:`get_items` would return, as a :class:`RecordStream`.

        For answers that may be large (a collection read without a limit): a
        backend that can should hand the records out in chunks from one
        consistent snapshot, so that memory does not grow with the answer,
        and should still read small answers at once (``records`` set). The
        caller closes the stream (iterating to the end does). Optional: the
        default wraps :meth:`get_items` (the whole answer in memory).
        """
        return RecordStream.of(self.get_items(user_id, collection, query, full))

    @abc.abstractmethod
    def get_item(self, user_id, collection, item_id):
        """Return the full record of one live item, or ``None``."""

    # -- writes -----------------------------------------------------------------

    @abc.abstractmethod
    def set_items(self, user_id, collection, items, now, if_unmodified_since=None,
                  quota_kb=None, *, rules=SYNC11_WRITES, precondition="collection"):
        """Store ``items`` (a sequence of :class:`ItemWrite`) in one transaction.

        ``now`` is the request's time (centiseconds). Items with the same id
        are applied in order, the last one winning field by field. ``rules``
        (:class:`WriteRules`) says what gets stamped. Returns a
        :class:`WriteResult`.

        ``quota_kb``: ``None`` checks no quota at all (administration,
        imports); otherwise it is the default quota in KB (``storage.quota_size``,
        0: unlimited) for a user without a quota of their own, and the quota
        that applies is checked in the same transaction as the write (see the
        module docstring), before the precondition.

        ``if_unmodified_since`` (centiseconds) is compared with the
        collection's timestamp (``precondition="collection"``; a collection
        not listed passes), or with the one item's ``modified``
        (``precondition="item"``, only with exactly one item; 0 when the item
        is missing, expired or was never stamped, so 0 means "create only if
        absent"); the write happens only when the target is not newer.

        Raises :class:`QuotaExceeded` (nothing written) when the user had no
        quota left; :class:`PreconditionFailed` (nothing written) when the
        target is newer than ``if_unmodified_since``; :class:`ConflictError`
        when the write could not be applied because of concurrent changes;
        :class:`UserDeleted` for a deleted user; ``ValueError`` for
        ``precondition="item"`` with other than one item.
        """

    def check_quota(self, user_id, quota_kb):
        """What :meth:`set_items` would say of the quota, without writing.

        For answers refused before any write (an invalid body is still
        answered "over quota" first, as Sync 1.1 does). Returns the KB left
        (``None``: no quota applies) or raises :class:`QuotaExceeded`.
        ``quota_kb`` as for :meth:`set_items`. The default reads
        :meth:`get_user_quota` and :meth:`get_total_usage`; a backend with a
        usage total should read that instead.
        """
        if quota_kb is None:
            return None
        return quota_left_kb(quota_kb, self.get_user_quota(user_id),
                             self.get_total_usage(user_id))

    @abc.abstractmethod
    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None, *,
                    precondition="collection"):
        """Delete one item.

        With ``precondition="collection"`` (Sync 1.1) an expired item is
        deleted too, and ``if_unmodified_since`` is compared with the
        collection's timestamp. With ``precondition="item"`` (Sync 1.5) an
        expired item counts as missing, and ``if_unmodified_since`` is
        compared with the item's ``modified``.

        Returns the deletion's stamp T (now the collection's timestamp) if an
        item was deleted, else ``None`` (nothing stamped). Raises
        :class:`PreconditionFailed` (nothing deleted), :class:`UserDeleted`.
        """

    @abc.abstractmethod
    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None, *,
                     stamp_always=False):
        """Delete the items (expired or not) that match ``query``; the collection stays listed.

        ``ItemQuery()`` deletes every item of the collection (Sync 1.1's
        DELETE of a collection). ``sort``, ``limit`` and ``offset`` choose
        which matching items go, as they would for a read. Returns the new
        collection timestamp if anything was deleted, else ``None``; with
        ``stamp_always`` (Sync 1.5's ``DELETE ?ids=``, whose collection keeps
        the request's timestamp) a collection the user has is stamped even
        when nothing matched, and one the user does not have stays absent. Raises
        :class:`PreconditionFailed` (against the collection's timestamp, as
        :meth:`set_items`), :class:`UserDeleted`.
        """

    @abc.abstractmethod
    def delete_collection(self, user_id, collection, now, if_unmodified_since=None):
        """Delete the collection: its items, its timestamp and its open batches.

        Sync 1.5's DELETE of a collection: unlike ``delete_items(ItemQuery())``
        the collection leaves :meth:`get_collection_timestamps`. The user's
        storage timestamp becomes the deletion's stamp T, also when the
        collection did not exist. Returns T. Raises
        :class:`PreconditionFailed` when ``if_unmodified_since`` is older
        than the collection's timestamp (nothing deleted),
        :class:`UserDeleted`.
        """

    @abc.abstractmethod
    def delete_storage(self, user_id, now, if_unmodified_since=None):
        """Delete all the user's items, collection timestamps and open batches.

        The user's storage timestamp becomes the deletion's stamp T, which is
        returned; later writes are still stamped after every earlier stamp.
        Raises :class:`PreconditionFailed` when ``if_unmodified_since`` is
        older than the storage timestamp (nothing deleted), :class:`UserDeleted`.
        """

    @abc.abstractmethod
    def delete_user(self, user_id):
        """Forget the user: items, collections, batches, quota; leave a tombstone.

        Every later write for ``user_id`` raises :class:`UserDeleted` until
        :meth:`purge_expired` removes the tombstone (after
        :data:`DELETED_USER_RETENTION_SECONDS`) or :meth:`restore_records`
        writes to the id. Deleting an unknown or already deleted user is
        harmless. Returns nothing.
        """

    # -- batches (Sync 1.5 batch uploads; optional) ----------------------------

    def create_batch(self, user_id, collection, now, lifetime_seconds):
        """Open a batch of uploads to ``collection``; return its id (str).

        The id is opaque, URL-safe and unguessable. The batch belongs to this
        user and collection only, and expires ``lifetime_seconds`` after
        ``now`` (centiseconds). Nothing becomes visible until
        :meth:`commit_batch`. Raises :class:`UserDeleted`, and
        :class:`~syncserver.errors.NotSupported` (the default) when the
        backend has no batches: Sync 1.5 then answers as a server without
        batching.
        """
        raise NotSupported(f"{type(self).__name__} has no batch uploads")

    def append_to_batch(self, user_id, collection, batch_id, items, now, *, quota_kb=None,
                        max_total_records, max_total_bytes):
        """Stage ``items`` (:class:`ItemWrite`) in the open batch ``batch_id``; return nothing.

        Staging an id again merges into that id's staged fields only (later
        non-null fields win); nothing becomes visible. The batch may then
        hold at most ``max_total_records`` distinct ids and
        ``max_total_bytes`` payload bytes (``None``: no limit).
        ``quota_kb`` as for :meth:`set_items`, counting the user's usage plus
        what the batch stages with these items.

        Raises :class:`BatchNotFound` (a malformed, unknown, expired or
        committed id, or another user's or collection's batch),
        :class:`BatchTooLarge`, :class:`QuotaExceeded`, :class:`UserDeleted`;
        nothing is staged then. :class:`~syncserver.errors.NotSupported` by
        default.
        """
        raise NotSupported(f"{type(self).__name__} has no batch uploads")

    def commit_batch(self, user_id, collection, batch_id, items, now, *,
                     if_unmodified_since=None, quota_kb=None, max_total_records,
                     max_total_bytes):
        """Write the batch's staged items, then ``items``, in one transaction at one stamp T.

        ``items`` win over staged items with the same id, field by field.
        Everything is written with :data:`SYNC15_BATCH_COMMIT`: every item
        gets ``modified = T`` and its ttl counts from T. The batch is then
        gone: its id is not found again. A failure (or a crash) leaves the
        batch whole and nothing written. Returns a :class:`WriteResult`
        whose ``modified`` lists every id written and whose ``quota_left_kb``
        is what was left with the batch counted (as Sync 1.5 reports it).
        Checked in this order: the precondition, the batch, the limits, the
        quota.

        Raises :class:`BatchNotFound`, :class:`BatchTooLarge` (limits as for
        :meth:`append_to_batch`, over the staged and the given items),
        :class:`PreconditionFailed` (against the collection's timestamp),
        :class:`QuotaExceeded`, :class:`UserDeleted`;
        :class:`~syncserver.errors.NotSupported` by default.
        """
        raise NotSupported(f"{type(self).__name__} has no batch uploads")

    # -- export and import -----------------------------------------------------

    @abc.abstractmethod
    def export_records(self, user_id, collection):
        """Return the collection's live items as :class:`StoredRecord` objects, ordered by id."""

    @abc.abstractmethod
    def restore_records(self, user_id, collection, records, timestamp):
        """Store ``records`` (:class:`StoredRecord`) exactly as given, in one transaction.

        For import and migration, not for clients: ``modified`` and
        ``expires`` are kept as they are, and items with the same ids are
        replaced. The collection's timestamp becomes the largest of its
        current one, ``timestamp`` and every restored ``modified``; the
        user's later writes are stamped after it. Restoring the same records
        twice changes nothing. A deleted user's tombstone is cleared.
        Returns the collection's timestamp.
        """

    # -- maintenance -----------------------------------------------------------

    @abc.abstractmethod
    def purge_expired(self, now_seconds, batch_size=1000):
        """Remove up to ``batch_size`` expired things for good; return how many went.

        Expired items (at ``now_seconds``, epoch seconds) go, and their bytes
        leave the users' usage; so do batches whose lifetime has passed (with
        what they staged) and tombstones of users deleted more than
        :data:`DELETED_USER_RETENTION_SECONDS` ago. The count is of items,
        batches and tombstones; 0 means nothing is left. Each call is a few
        short transactions, so that calling it in a loop until it returns 0
        never holds locks for long while the server serves. Calls in such a
        loop pass the same ``now_seconds``; a backend may remember where the
        previous call stopped and go on from there.
        """

    def reclaim_space(self, full=False):
        """Give the space freed by deletions back to the file system, where that is needed.

        Run after :meth:`purge_expired`. Without ``full`` it must not block
        writers for long (short steps); with ``full`` it may rebuild the
        store (blocking writers meanwhile) when that is the only way.
        Returns the bytes given back, or ``None`` when the backend has
        nothing to do (its database reuses free space by itself). The
        default: ``None``.
        """
        return None

    # -- optional: administration (syncserver-admin) -------------------------
    # Backends that do not implement these still serve the APIs; the admin
    # commands that need them say so.

    def get_user_quota(self, user_id):
        """Return the user's own quota in KB (0: no quota), or ``None`` when
        ``storage.quota_size`` applies. The default: always ``None``."""
        return None

    def set_user_quota(self, user_id, quota_kb):
        """Give the user their own quota in KB (0: none); ``None`` restores the default.

        Returns nothing. Raises :class:`UserDeleted`;
        :class:`~syncserver.errors.NotSupported` by default.
        """
        raise NotSupported(f"{type(self).__name__} has no per-user quotas")

    def count_expired(self, now_seconds):
        """Return how many items have expired at ``now_seconds`` (epoch seconds), an int.

        :class:`~syncserver.errors.NotSupported` by default.
        """
        raise NotSupported(f"{type(self).__name__} cannot count expired items")

    def get_statistics(self, now_seconds):
        """Return :class:`StorageStatistics` for the whole store (may scan everything).

        :class:`~syncserver.errors.NotSupported` by default.
        """
        raise NotSupported(f"{type(self).__name__} cannot report statistics")

    def close(self):
        """Release connections and pools. The default does nothing."""
