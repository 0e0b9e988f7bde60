"""How the SQL storage backend applies a write inside the user's locked transaction.

:mod:`syncserver.storage.sql` opens the transaction and locks the user's
row (:class:`UserLock`); :func:`write_items` then applies items to one
collection under the :class:`~syncserver.storage.WriteRules` of the write,
and the lock saves the user's new stamp and usage at the end. A plain write
(``set_items``) and a batch commit (:mod:`syncserver.storage.sql_batches`)
both go through :func:`write_items`, so the two apply items the same way:

- a stored item whose ttl has passed is absent: it is deleted and the item
  inserted anew (Sync 1.5's SS-12: no metadata-only write brings an expired
  payload back);
- an existing item gets only the fields sent, and its ``modified`` becomes
  the write's stamp when the rules say the fields sent stamp it;
- the bytes of payloads written and replaced adjust the user's usage total.
"""

import time

from syncserver.db import direct
from syncserver.storage import NEVER_EXPIRES, PreconditionFailed
from syncserver.storage import sql_schema as schema

#: Metadata columns an item write may set without a payload.
METADATA_FIELDS = ("sortindex", "parentid", "predecessorid")
#: Every field of an ItemWrite, as merged by merge_writes.
WRITE_FIELDS = ("payload",) + METADATA_FIELDS + ("ttl",)


class UserLock:
    """What a write learned while locking the user, and what it changes in the user's row.

    The stamp and usage changes are written by :meth:`save`, once, at the end
    of the transaction.
    """

    __slots__ = ("changed", "collection_id", "collection_ts", "connection", "deleted_at",
                 "last_modified", "own_quota_kb", "quota_left_kb", "stored_item", "usage_bytes",
                 "usage_delta", "user_id")

    def __init__(self, connection, user_id, collection_id, row, collection_ts,
                 stored_item=None):
        self.connection = connection
        self.user_id = user_id
        self.collection_id = collection_id
        self.last_modified, self.own_quota_kb, self.usage_bytes, self.deleted_at = row
        self.collection_ts = collection_ts
        #: The write's one item as EXISTING_ITEM reads it, () when not stored, read
        #: with the lock; None when the lock did not read it.
        self.stored_item = stored_item
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
                direct.execute(self.connection, schema.UPDATE_COLLECTION_STAMP, {
                    "k_userid": self.user_id, "k_collection": self.collection_id,
                    "v_modified": stamp})
            self.collection_ts = stamp
        self.record_storage(stamp)

    def record_storage(self, stamp):
        """Make ``stamp`` the user's last stamp (a deletion that leaves no collection)."""
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
            direct.execute(self.connection, schema.UPDATE_USER_ROW, {
                "k_userid": self.user_id, "v_last_modified": self.last_modified,
                "v_usage_delta": self.usage_delta})
            self.changed = False


def merge_writes(items):
    """``{id: {field: value}}`` from ItemWrites, duplicates merged in order, later values winning.

    A field that is None (not sent) is left out.
    """
    writes = {}
    for item in items:
        fields = writes.setdefault(item.id, {})
        for name in WRITE_FIELDS:
            value = getattr(item, name)
            if value is not None:
                fields[name] = value
    return writes


def payload_size(payload):
    """UTF-8 bytes of a payload (0 for none): what usage and quotas count."""
    return len(payload.encode("utf-8")) if payload is not None else 0


def _stamps_item(fields, rules, new):
    """Whether writing ``fields`` gives the item ``modified = T`` under ``rules``."""
    return ("payload" in fields or rules.stamp_every_item
            or (rules.stamp_on_sortindex and "sortindex" in fields)
            or (new and rules.new_item_payload is not None))


def write_items(lock, writes, stamp, rules, executemany, if_item_unmodified_since=None):
    """Apply ``writes`` (:func:`merge_writes`) to the lock's collection; ``stamp`` is T.

    Returns ``(modified, stamped)``: each id's ``modified`` after the write,
    and whether any item was given ``stamp`` (the caller then records the
    stamp). ``if_item_unmodified_since``: the one item's ``modified`` (0
    when missing, expired or never stamped) must not be newer, else
    :class:`PreconditionFailed` (the caller's transaction rolls back).
    ``executemany(connection, statement, rows)`` runs a statement per row.
    """
    if not writes:
        return {}, False
    connection = lock.connection
    now_seconds = int(time.time())
    owner = {"userid": lock.user_id, "collection": lock.collection_id}
    if len(writes) == 1:
        (only_id,) = writes
        stored_item = lock.stored_item
        if stored_item is not None and (not stored_item or stored_item[0] == only_id):
            rows = [stored_item] if stored_item else []
        else:
            rows = direct.all_rows(connection, schema.EXISTING_ITEM, {**owner, "id": only_id})
    else:
        rows = direct.all_rows(connection, schema.EXISTING_ITEMS, {**owner, "ids": list(writes)})
    # Expired rows are absent, whatever they held.
    stored = {item_id: (modified, size) for item_id, modified, ttl, size in rows
              if ttl > now_seconds}
    expired = [(item_id, size) for item_id, _modified, ttl, size in rows if ttl <= now_seconds]
    if if_item_unmodified_since is not None:
        (only_id,) = writes
        current = (stored.get(only_id) or (None,))[0] or 0
        if current > if_item_unmodified_since:
            raise PreconditionFailed(current)
    ttl_base = min(stamp // 100, now_seconds) if rules.ttl_from_stamp else now_seconds
    inserts, updates, modified = [], {}, {}
    stamped = False
    usage_delta = -sum(size for _, size in expired)
    for item_id, fields in writes.items():
        previous = stored.get(item_id)
        ttl = fields.get("ttl")
        if previous is None:
            payload = fields.get("payload", rules.new_item_payload)
            item_stamped = _stamps_item(fields, rules, new=True)
            row = {
                **owner, "id": item_id, "sortindex": fields.get("sortindex"),
                "parentid": fields.get("parentid"),
                "predecessorid": fields.get("predecessorid"), "payload": payload,
                "payload_size": payload_size(payload),
                "modified": stamp if item_stamped else None,
                "ttl": ttl_base + ttl if ttl is not None else NEVER_EXPIRES,
            }
            inserts.append(row)
            usage_delta += row["payload_size"]
            modified[item_id] = row["modified"]
            stamped = stamped or item_stamped
            continue
        values = {"v_" + name: fields[name] for name in METADATA_FIELDS if name in fields}
        if ttl is not None:
            values["v_ttl"] = ttl_base + ttl
        if "payload" in fields:
            size = payload_size(fields["payload"])
            values.update(v_payload=fields["payload"], v_payload_size=size)
            usage_delta += size - previous[1]
        if _stamps_item(fields, rules, new=False):
            values["v_modified"] = stamp
            modified[item_id] = stamp
            stamped = True
        else:
            modified[item_id] = previous[0]
        if values:
            key = tuple(sorted(values))
            values.update(k_userid=lock.user_id, k_collection=lock.collection_id, k_id=item_id)
            updates.setdefault(key, []).append(values)
    if expired:
        connection.execute(schema.delete_items(("ids",)), {
            **owner, "ids": [item_id for item_id, _ in expired]})
    if inserts:
        executemany(connection, schema.INSERT_ITEM, inserts)
    for key, rows in updates.items():
        executemany(connection, schema.update_items(key), rows)
    lock.add_usage(usage_delta)
    return modified, stamped
