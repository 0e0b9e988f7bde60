"""The errors a storage backend raises on purpose (re-exported by :mod:`syncserver.storage`).

Each says what was refused and why, and nothing was written when one is
raised by a write. The application maps them to each protocol's answer:
:class:`StorageUnavailable` to 503, the others as the controllers say.
"""

from syncserver.errors import BackendUnavailable


class StorageError(Exception):
    """Base class of every error a storage backend raises on purpose."""


class StorageUnavailable(StorageError, BackendUnavailable):
    """The database (or other service) behind the backend did not answer.

    The application answers 503 with ``Retry-After``.
    """

    service = "storage"


class PreconditionFailed(StorageError):
    """``if_unmodified_since`` was older than the target's timestamp; nothing was written.

    ``timestamp`` holds the target's current timestamp (centiseconds): the
    collection's, the item's or the storage's, whichever was checked. The
    application answers 412.
    """

    def __init__(self, timestamp):
        super().__init__(f"modified at {timestamp}")
        self.timestamp = timestamp


class ConflictError(StorageError):
    """The write collided with concurrent changes and was not applied.

    Sync 1.1 answers 400 with code 4, Sync 1.5 503 with ``Retry-After``.
    """


class QuotaExceeded(StorageError):
    """The user had no quota left for this write; nothing was written.

    ``quota_kb`` is the quota that applies (KB), ``used_bytes`` the usage it
    was checked against (expired items not yet purged included, and for a
    batch what the batch stages and brings).
    """

    def __init__(self, quota_kb, used_bytes):
        super().__init__(f"{used_bytes} bytes used of a quota of {quota_kb} KB")
        self.quota_kb = quota_kb
        self.used_bytes = used_bytes


class UserDeleted(StorageError):
    """The user was deleted (:meth:`StorageBackend.delete_user`); nothing was written."""


class BatchNotFound(StorageError):
    """No open batch with this id for this user and collection.

    Raised for a malformed id, an unknown one, an expired or committed batch,
    and another user's or collection's batch alike (Sync 1.5: 400).
    """


class BatchTooLarge(StorageError):
    """The batch would hold more than ``max_total_records`` ids or ``max_total_bytes``.

    ``records`` and ``bytes`` are what the batch would have held; nothing was
    staged or written (Sync 1.5: 400 with code 17).
    """

    def __init__(self, records, payload_bytes):
        super().__init__(f"a batch of {records} records and {payload_bytes} payload bytes")
        self.records = records
        self.bytes = payload_bytes
