"""What goes in and out of the storage interface (re-exported by :mod:`syncserver.storage`).

Queries (:class:`ItemQuery`), writes (:class:`ItemWrite` under
:class:`WriteRules`) and their results (:class:`WriteResult`), streamed
reads (:class:`RecordStream`), records as stored (:class:`StoredRecord`)
and statistics. Plain values: nothing here touches a backend.
"""

import dataclasses
from collections.abc import Mapping

#: Absolute expiry (epoch seconds) stored for items that never expire (year 2286).
NEVER_EXPIRES = 9_999_999_999


@dataclasses.dataclass(frozen=True)
class WriteRules:
    """How a write stamps what it touches; ``T`` is the write's timestamp.

    - ``new_item_payload``: the payload a *new* item written without one gets
      (``None``: none, and then no ``modified`` either; ``""``: an empty
      payload and ``modified = T``).
    - ``stamp_on_sortindex``: writing ``sortindex`` sets the item's
      ``modified`` to T, as writing ``payload`` always does.
    - ``stamp_collection_always``: every successful write makes the
      collection's timestamp T, even one that changed only a ttl (and the
      returned ``timestamp`` is T); otherwise only a write that stamped an
      item does.
    - ``stamp_every_item``: every written item gets ``modified = T``, ttl-only
      writes included (a batch commit).
    - ``ttl_from_stamp``: a ``ttl`` counts from T (at most from the server's
      clock, so that ``ttl=0`` hides an item at once); otherwise from the
      server's clock at the write.

    A ttl-only write never changes an item's ``modified`` except under
    ``stamp_every_item``.
    """

    new_item_payload: str | None = None
    stamp_on_sortindex: bool = False
    stamp_collection_always: bool = False
    stamp_every_item: bool = False
    ttl_from_stamp: bool = False


#: Sync 1.1: only payload writes stamp; the default of every write method.
SYNC11_WRITES = WriteRules()
#: Sync 1.5 PUT and POST: new items get payload "", sortindex stamps, the collection always.
SYNC15_WRITES = WriteRules(new_item_payload="", stamp_on_sortindex=True,
                           stamp_collection_always=True, ttl_from_stamp=True)
#: Sync 1.5 batch commit: as SYNC15_WRITES, and every committed item gets modified = T.
SYNC15_BATCH_COMMIT = dataclasses.replace(SYNC15_WRITES, stamp_every_item=True)


@dataclasses.dataclass(frozen=True)
class ItemQuery:
    """Filters, order and paging for reading or deleting a collection's items.

    Every field left at ``None`` does not filter. Comparisons are strict
    unless said otherwise.

    - ``ids``: only items whose id is in this tuple.
    - ``parentid`` / ``predecessorid``: equality on that field.
    - ``newer`` / ``older``: ``modified > newer`` / ``modified < older`` (centiseconds).
    - ``modified_at_least`` / ``modified_at_most``: ``modified >= x`` /
      ``modified <= x`` (inclusive; centiseconds): the bound of a Sync 1.5
      offset token. Like every filter they apply before ``offset``.
    - ``index_above`` / ``index_below``: ``sortindex > x`` / ``sortindex < x``.
    - ``sort``: ``"oldest"`` (modified ascending), ``"newest"`` (modified
      descending) or ``"index"`` (sortindex descending), ties broken by id;
      ``None``: any order.
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
    modified_at_least: int | None = None
    modified_at_most: int | None = None

    def has_filters(self):
        """True when the query selects less than the whole collection."""
        return any(getattr(self, field.name) is not None
                   for field in dataclasses.fields(self) if field.name != "sort")


@dataclasses.dataclass(frozen=True)
class ItemWrite:
    """One validated item to store. ``None`` means "not sent": keep what is stored.

    - ``payload``: the opaque (encrypted) text; writing it stamps ``modified``.
    - ``ttl``: seconds until the item expires (0 expires it at once), from
      the write (see :class:`WriteRules`).
    - ``sortindex``, ``parentid``, ``predecessorid``: metadata.

    Under :data:`SYNC11_WRITES` an item written without ``payload`` changes
    only the metadata sent and keeps its ``modified``; a new item written
    without ``ttl`` never expires. An expired stored item is treated as
    absent: the write replaces it whole.
    """

    id: str
    payload: str | None = None
    sortindex: int | None = None
    parentid: str | None = None
    predecessorid: str | None = None
    ttl: int | None = None


@dataclasses.dataclass(frozen=True)
class WriteResult:
    """What :meth:`StorageBackend.set_items` (or a batch commit) did.

    - ``timestamp``: the write's stamp T, given to the items it stamped and
      to the collection. Under :data:`SYNC11_WRITES`, when no item carried a
      payload, it is the ``now`` that was passed in (nothing was stamped);
      under the Sync 1.5 rules it is always T.
    - ``modified``: each written id's ``modified`` after the write
      (``None`` for an item that has never had a payload).
    - ``quota_left_kb``: the KB the user had left *before* this write (what
      ``X-Weave-Quota-Remaining`` reports); ``None`` when no quota applies
      or none was asked for.
    """

    timestamp: int
    modified: Mapping[str, int | None]
    quota_left_kb: float | None = None


class RecordStream:
    """The answer of :meth:`StorageBackend.stream_items`: a count, then the records in chunks.

    - ``count`` is known before any record is read (the ``X-Weave-Records``
      of the answer) and is exactly the number of records iterating yields:
      a backend that streams reads both from one consistent snapshot.
    - Iterating yields lists of records (dicts as :meth:`StorageBackend.get_items`
      returns them), in the query's order; the stream is closed at the end.
    - ``records`` is the whole answer as one list when it was small enough to
      be read at once, else ``None`` (the caller may then render it in one
      piece, which is faster for small answers).
    - :meth:`close` releases what the stream holds (a connection, a
      snapshot); it is safe to call more than once, and before iterating.
    """

    def __init__(self, count, chunks, records=None, close=None):
        self.count = count
        self.records = records
        self._chunks = chunks
        self._close = close
        self._closed = False

    @classmethod
    def of(cls, records):
        """A stream of records already in memory (a list)."""
        records = list(records)
        return cls(len(records), [records] if records else [], records=records)

    def __iter__(self):
        try:
            for chunk in self._chunks:
                if chunk:
                    yield chunk
        finally:
            self.close()

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self._close is not None:
            self._close()


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
