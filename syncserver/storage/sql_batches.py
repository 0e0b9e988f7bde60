"""Sync 1.5 batch uploads in the SQL storage backend: staging, limits and the atomic commit.

Mixed into :class:`syncserver.storage.sql.SQLStorage`, whose write
transactions (``_writing``: the user's row locked) they use:

- A batch is a row of ``batches`` with a random id (``secrets``: 96 bits,
  24 hex digits), its user, collection, creation and expiry, and the running
  totals of what it stages; ``batch_items`` holds one row per staged id.
  Re-staging an id updates that id's row only (upstream's SS-1), with only
  the fields sent (later non-null fields win).
- Every append and commit first finds the batch under the user's lock: an
  id that is malformed, unknown, expired, committed, or another user's or
  collection's is :class:`~syncserver.storage.BatchNotFound`. Appends and
  commits of one user are thereby serialized with each other and with the
  deletions that drop batches (``delete_collection``, ``delete_storage``,
  ``delete_user``) and with the purge (which locks users first), so a commit
  never sees half a batch.
- The totals (distinct ids, payload bytes) are counted on every append and
  at the commit, whatever the client declared (upstream's SS-9), and the
  quota counts the user's usage plus the batch.
- A commit reads the staged rows in id order, a chunk at a time, merges the
  commit's own items into them (the commit's win field by field), and
  writes everything with :data:`~syncserver.storage.SYNC15_BATCH_COMMIT` at
  one stamp, then deletes the batch, all in one transaction: a worker killed
  meanwhile leaves the batch whole and nothing written.
"""

import re
import secrets

from syncserver.storage import (
    SYNC15_BATCH_COMMIT,
    BatchNotFound,
    BatchTooLarge,
    WriteResult,
    quota_left_kb,
)
from syncserver.storage import sql_schema as schema
from syncserver.storage.sql_writes import merge_writes, payload_size, write_items

#: What create_batch hands out: 96 random bits as lowercase hex.
BATCH_ID = re.compile(r"[0-9a-f]{24}")
#: Staged rows read (and written) per step of a commit.
COMMIT_CHUNK = 500


class SQLBatches:
    """The batch methods of :class:`~syncserver.storage.sql.SQLStorage`."""

    def create_batch(self, user_id, collection, now, lifetime_seconds):
        """One INSERT under the user's lock (which refuses a deleted user)."""
        collection_id = self._collection_id(collection, create=True)
        batch_id = secrets.token_hex(12)
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id) as lock:
                lock.connection.execute(schema.INSERT_BATCH, {
                    "id": batch_id, "userid": user_id, "collection": collection_id,
                    "created": now, "expires": now + int(lifetime_seconds) * 100,
                    "records": 0, "payload_bytes": 0})
        return batch_id

    def append_to_batch(self, user_id, collection, batch_id, items, now, *, quota_kb=None,
                        max_total_records, max_total_bytes):
        """Find the batch, count what it would hold, then INSERT new ids and UPDATE staged ones."""
        collection_id = self._batch_collection(collection, batch_id)
        writes = merge_writes(items)
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id) as lock:
                batch = _open_batch(lock, batch_id, now)
                staged = _staged_sizes(lock, batch_id, writes)
                records, total_bytes = _totals(batch, staged, writes, max_total_records,
                                               max_total_bytes)
                _check_quota(lock, quota_kb, total_bytes)
                inserts, updates = [], {}
                for item_id, fields in writes.items():
                    values = {name: fields.get(name) for name in schema.STAGED_COLUMNS[1:]}
                    if item_id not in staged:
                        inserts.append({"batch": batch_id, "id": item_id, **values,
                                        "payload_size": payload_size(values["payload"])})
                        continue
                    changed = {"v_" + name: value for name, value in values.items()
                               if value is not None}
                    if "v_payload" in changed:
                        changed["v_payload_size"] = payload_size(changed["v_payload"])
                    if changed:
                        key = tuple(sorted(changed))
                        updates.setdefault(key, []).append(
                            {**changed, "k_batch": batch_id, "k_id": item_id})
                connection = lock.connection
                if inserts:
                    self._executemany(connection, schema.INSERT_STAGED, inserts)
                for key, rows in updates.items():
                    self._executemany(connection, schema.update_staged(key), rows)
                connection.execute(schema.UPDATE_BATCH_TOTALS, {
                    "k_batch": batch_id, "v_records": records, "v_payload_bytes": total_bytes})

    def commit_batch(self, user_id, collection, batch_id, items, now, *,
                     if_unmodified_since=None, quota_kb=None, max_total_records,
                     max_total_bytes):
        """Precondition, batch, limits, quota; the staged rows in chunks; the batch goes."""
        collection_id = self._batch_collection(collection, batch_id)
        writes = merge_writes(items)
        for attempt in self._attempts():
            with attempt, self._writing(user_id, collection_id, if_unmodified_since) as lock:
                pending = dict(writes)  # emptied as staged rows take their fields
                batch = _open_batch(lock, batch_id, now)
                staged = _staged_sizes(lock, batch_id, pending)
                _records, total_bytes = _totals(batch, staged, pending, max_total_records,
                                                max_total_bytes)
                _check_quota(lock, quota_kb, total_bytes)
                connection = lock.connection
                stamp = lock.next_stamp(now)
                modified = {}
                after = None
                while True:
                    if after is None:
                        rows = connection.execute(schema.STAGED_FIRST_CHUNK, {
                            "batch": batch_id, "chunk": COMMIT_CHUNK}).all()
                    else:
                        rows = connection.execute(schema.STAGED_CHUNK, {
                            "batch": batch_id, "after_id": after, "chunk": COMMIT_CHUNK}).all()
                    if not rows:
                        break
                    chunk = {}
                    for row in rows:
                        fields = {name: value for name, value in zip(schema.STAGED_COLUMNS[1:],
                                                                      row[1:], strict=True)
                                  if value is not None}
                        fields.update(pending.pop(row[0], {}))
                        chunk[row[0]] = fields
                    modified.update(write_items(lock, chunk, stamp, SYNC15_BATCH_COMMIT,
                                                self._executemany)[0])
                    after = rows[-1][0]
                    if len(rows) < COMMIT_CHUNK:
                        break
                if pending:
                    modified.update(write_items(lock, pending, stamp, SYNC15_BATCH_COMMIT,
                                                self._executemany)[0])
                connection.execute(schema.DELETE_STAGED, {"batch": batch_id})
                connection.execute(schema.DELETE_BATCH, {"batch": batch_id})
                lock.record(stamp)
                return WriteResult(stamp, modified, lock.quota_left_kb)

    def _batch_collection(self, collection, batch_id):
        """The collection's id, or BatchNotFound (a well-formed id's collection has one)."""
        if not isinstance(batch_id, str) or not BATCH_ID.fullmatch(batch_id):
            raise BatchNotFound(f"malformed batch id {batch_id!r}")
        collection_id = self._collection_id(collection, create=False)
        if collection_id is None:
            raise BatchNotFound(f"no batch {batch_id} in collection {collection!r}")
        return collection_id


def _open_batch(lock, batch_id, now):
    """The batch's row if it is open for the lock's user and collection at ``now``."""
    row = lock.connection.execute(schema.BATCH, {"batch": batch_id}).first()
    if (row is None or row.userid != lock.user_id or row.collection != lock.collection_id
            or row.expires <= now):
        raise BatchNotFound(f"no open batch {batch_id} for this user and collection")
    return row


def _staged_sizes(lock, batch_id, writes):
    """``{id: staged payload bytes}`` of the ids of ``writes`` the batch already stages."""
    if not writes:
        return {}
    return dict(lock.connection.execute(schema.STAGED_SIZES, {
        "batch": batch_id, "ids": list(writes)}).all())


def _totals(batch, staged, writes, max_records, max_bytes):
    """(distinct ids, payload bytes) once ``writes`` are staged; BatchTooLarge past a limit."""
    records = batch.records + sum(1 for item_id in writes if item_id not in staged)
    total_bytes = batch.payload_bytes + sum(
        payload_size(fields["payload"]) - staged.get(item_id, 0)
        for item_id, fields in writes.items() if "payload" in fields)
    if ((max_records is not None and records > max_records)
            or (max_bytes is not None and total_bytes > max_bytes)):
        raise BatchTooLarge(records, total_bytes)
    return records, total_bytes


def _check_quota(lock, quota_kb, batch_bytes):
    """The quota, counting the user's usage and what the batch will hold."""
    if quota_kb is not None:
        lock.quota_left_kb = quota_left_kb(quota_kb, lock.own_quota_kb,
                                           lock.usage_bytes + batch_bytes)
