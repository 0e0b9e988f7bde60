"""The storage plugin interface.

Every storage backend (the bundled SQL one, the Redis cache wrapper, a
user's own class) implements :class:`StorageBackend`. Controllers talk only to
this interface, so a caller never needs a backend's source.

Conventions used by every method:

- ``user_id`` is the integer id given by the authentication backend.
- ``collection`` is a validated name matching ``[a-zA-Z0-9._-]{1,32}``.
- Timestamps are **integers counting centiseconds** since the epoch
  (``1370000000.10`` s is ``137000000010``); no floats anywhere.
- A *record* returned by a read is a dict with ``"id"`` and, for full reads,
  any of ``"modified"`` (int centiseconds), ``"sortindex"`` (int),
  ``"payload"``, ``"parentid"``, ``"predecessorid"`` (str) whose value is not
  null. ``ttl`` and sizes are never returned.
- Expired items (``ttl`` in the past) are invisible to every read at once, yet
  still count for collection timestamps until purged.

Consistency rules every backend must keep (the conformance suite in
:mod:`syncserver.testing` checks them):

- Each write, and each delete that removed something, is stamped with
  ``max(now, last stamp given to this user + 1)``: a user's timestamps never
  go backwards and a write is always strictly newer than the collection's
  previous timestamp.
- ``if_unmodified_since`` is checked against the collection timestamp in the
  same transaction as the write, so of two racing writers exactly one wins.
- :meth:`StorageBackend.set_items` is one transaction: all items are stored
  or none.
"""

import abc
import dataclasses
from collections.abc import Mapping

from syncserver.errors import BackendUnavailable
from syncserver.plugins import Plugin

#: Absolute expiry (epoch seconds) stored for items that never expire (year 2286).
NEVER_EXPIRES = 9_999_999_999


class StorageError(Exception):
    """Base class of every error a storage backend raises on purpose."""


class StorageUnavailable(StorageError, BackendUnavailable):
    """The database (or other service) behind the backend did not answer.

    The application answers 503 with ``Retry-After``.
    """

    service = "storage"


class PreconditionFailed(StorageError):
    """``if_unmodified_since`` was older than the collection's timestamp.

    ``timestamp`` holds the collection's current timestamp (centiseconds).
    The application answers 412; nothing was written.
    """

    def __init__(self, timestamp):
        super().__init__(f"collection modified at {timestamp}")
        self.timestamp = timestamp


class ConflictError(StorageError):
    """The write collided with concurrent changes and was not applied (400, code 4)."""


@dataclasses.dataclass(frozen=True)
class ItemQuery:
    """Filters, order and paging for reading or deleting a collection's items.

    Every field left at ``None`` does not filter. Comparisons are strict.

    - ``ids``: only items whose id is in this tuple.
    - ``parentid`` / ``predecessorid``: equality on that field.
    - ``newer`` / ``older``: ``modified > newer`` / ``modified < older`` (centiseconds).
    - ``index_above`` / ``index_below``: ``sortindex > x`` / ``sortindex < x``.
    - ``sort``: ``"oldest"`` (modified ascending), ``"newest"`` (modified
      descending) or ``"index"`` (sortindex descending); ``None``: any order.
    - ``limit``: at most this many items (``None``: no limit).
    - ``offset``: skip this many items first (``None``: none).
    """

    ids: tuple | None = None
    parentid: str | None = None
    predecessorid: str | None = None
    newer: int | None = None
    older: int | None = None
    index_above: float | None = None
    index_below: float | None = None
    sort: str | None = None
    limit: int | None = None
    offset: int | None = None

    def has_filters(self):
        """True when the query selects less than the whole collection."""
        return any(getattr(self, field.name) is not None
                   for field in dataclasses.fields(self) if field.name != "sort")


@dataclasses.dataclass(frozen=True)
class ItemWrite:
    """One validated item to store. ``None`` means "not sent": keep what is stored.

    - ``payload``: the opaque (encrypted) text; writing it stamps ``modified``.
    - ``ttl``: seconds from now until the item expires (0 expires it at once).
    - ``sortindex``, ``parentid``, ``predecessorid``: metadata.

    An item written without ``payload`` changes only the metadata sent and
    keeps its ``modified``; a new item written without ``ttl`` never expires.
    An expired stored item is treated as absent: the write replaces it whole.
    """

    id: str
    payload: str | None = None
    sortindex: int | None = None
    parentid: str | None = None
    predecessorid: str | None = None
    ttl: int | None = None


@dataclasses.dataclass(frozen=True)
class WriteResult:
    """What :meth:`StorageBackend.set_items` did.

    - ``timestamp``: the stamp given to items written with a payload, and the
      collection's new timestamp; when no item carried a payload, the
      ``now`` that was passed in (nothing was stamped).
    - ``modified``: each written id's ``modified`` after the write
      (``None`` for an item that has never had a payload).
    """

    timestamp: int
    modified: Mapping[str, int | None]


@dataclasses.dataclass(frozen=True)
class StoredRecord:
    """One item exactly as stored: what export, import and migration move.

    Unlike :class:`ItemWrite` nothing is relative to "now": ``modified`` is
    the stored stamp (centiseconds, ``None`` if the item never had a payload)
    and ``expires`` the absolute expiry in epoch seconds.
    """

    id: str
    modified: int | None = None
    payload: str | None = None
    sortindex: int | None = None
    parentid: str | None = None
    predecessorid: str | None = None
    expires: int = NEVER_EXPIRES


@dataclasses.dataclass(frozen=True)
class CollectionStatistics:
    """Live items of one collection across all users (expired ones not counted)."""

    users: int
    items: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class StorageStatistics:
    """What the whole store holds, for ``syncserver-admin stats``.

    ``users`` counts users with at least one live item; ``bytes`` are UTF-8
    payload bytes; ``expired_items`` await :meth:`StorageBackend.purge_expired`.
    """

    users: int
    items: int
    bytes: int
    expired_items: int
    collections: Mapping[str, CollectionStatistics]


class StorageBackend(Plugin, abc.ABC):
    """What a storage backend must provide. See the module docstring for conventions.

    A backend class is named in ``storage.backend`` (alias or dotted path) and
    built with :meth:`from_settings`. Every method may raise
    :class:`StorageUnavailable` when its service is down.
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

    @abc.abstractmethod
    def get_collection_timestamps(self, user_id):
        """Return ``{collection: timestamp}`` for every collection ever written.

        A collection stays listed (with the time of the deletion) after its
        items are deleted; :meth:`delete_storage` forgets all of them.
        """

    @abc.abstractmethod
    def get_collection_timestamp(self, user_id, collection):
        """Return the collection's timestamp, or ``None`` if it was never written."""

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
        cache keep them. Optional: the default raises ``NotImplementedError``,
        and such answers are then not cached.
        """
        raise NotImplementedError

    @abc.abstractmethod
    def get_items(self, user_id, collection, query, full):
        """Return the live items matching ``query`` (an :class:`ItemQuery`).

        With ``full`` false each record is ``{"id": ...}`` only; with ``full``
        true it carries every non-null field. An unknown collection gives ``[]``.
        """

    @abc.abstractmethod
    def get_item(self, user_id, collection, item_id):
        """Return the full record of one live item, or ``None``."""

    @abc.abstractmethod
    def set_items(self, user_id, collection, items, now, if_unmodified_since=None):
        """Store ``items`` (a sequence of :class:`ItemWrite`) in one transaction.

        ``now`` is the request's time (centiseconds). Items with the same id
        are applied in order, the last one winning. Returns a :class:`WriteResult`.

        Raises :class:`PreconditionFailed` (nothing written) when
        ``if_unmodified_since`` is given and the collection's timestamp is
        greater than it; :class:`ConflictError` when the write could not be
        applied because of concurrent changes.
        """

    @abc.abstractmethod
    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None):
        """Delete one item (expired or not).

        Returns the new collection timestamp if an item was deleted, else
        ``None``. Raises :class:`PreconditionFailed` like :meth:`set_items`.
        """

    @abc.abstractmethod
    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None):
        """Delete the items (expired or not) that match ``query``.

        ``ItemQuery()`` deletes the whole collection. ``sort``, ``limit`` and
        ``offset`` choose which matching items go, as they would for a read.
        Returns the new collection timestamp if anything was deleted, else
        ``None``. Raises :class:`PreconditionFailed` like :meth:`set_items`.
        """

    @abc.abstractmethod
    def delete_storage(self, user_id, now):
        """Delete all the user's items and collection timestamps.

        Later writes are still stamped after every earlier stamp.
        """

    @abc.abstractmethod
    def delete_user(self, user_id):
        """Forget the user entirely: items, collections and bookkeeping."""

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
        twice changes nothing.
        """

    @abc.abstractmethod
    def purge_expired(self, now_seconds, batch_size=1000):
        """Remove up to ``batch_size`` expired items for good; return how many went.

        Items expired at ``now_seconds`` (epoch seconds) go. Each call is a few
        short transactions, so that calling it in a loop until it returns 0
        never holds locks for long while the server serves.
        """

    # -- optional: administration (syncserver-admin) -------------------------
    # Backends that do not implement these still serve the APIs; the admin
    # commands that need them say so.

    def get_user_quota(self, user_id):
        """Return the user's own quota in KB (0: no quota), or ``None`` when
        ``storage.quota_size`` applies. The default: always ``None``."""
        return None

    def set_user_quota(self, user_id, quota_kb):
        """Give the user their own quota in KB (0: none); ``None`` restores the default."""
        raise NotImplementedError(f"{type(self).__name__} has no per-user quotas")

    def count_expired(self, now_seconds):
        """Return how many items have expired at ``now_seconds`` (None: unknown)."""
        return None

    def get_statistics(self, now_seconds):
        """Return :class:`StorageStatistics` for the whole store (may scan everything)."""
        raise NotImplementedError(f"{type(self).__name__} cannot report statistics")

    def close(self):
        """Release connections and pools. The default does nothing."""
