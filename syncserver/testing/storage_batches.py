"""Conformance tests of batch uploads: ``create_batch``, ``append_to_batch``, ``commit_batch``.

Part of :class:`syncserver.testing.storage_conformance.StorageConformanceTests`.
A backend without batches (``create_batch`` raises
:class:`~syncserver.errors.NotSupported`) skips them. The upstream defects
the Sync 1.5 reference lists are tests here: re-staging an id touches that
id only (SS-1), deletions drop open batches (SS-2), a committed item without
ttl never expires (SS-5), the totals are counted, not declared (SS-9).
"""

import threading
import time

import pytest

from syncserver.errors import NotSupported
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import (
    NEVER_EXPIRES,
    SYNC15_WRITES,
    BatchNotFound,
    BatchTooLarge,
    ItemQuery,
    ItemWrite,
    PreconditionFailed,
    QuotaExceeded,
    UserDeleted,
    WriteResult,
)

USER = -1  # a Sync 1.5 storage id
OTHER_USER = -2
LIFETIME = 7200
UNLIMITED = {"max_total_records": None, "max_total_bytes": None}


def _ids(records):
    return sorted(record["id"] for record in records)


class BatchConformanceTests:
    """Staged items stay invisible; a commit writes them all at one stamp, once."""

    @pytest.fixture
    def batches(self, storage):
        """The storage, or a skip when it has no batches."""
        try:
            storage.create_batch(USER, "probe", now_centiseconds(), LIFETIME)
        except NotSupported:
            pytest.skip("this backend has no batch uploads")
        return storage

    @staticmethod
    def _open(storage, collection="bookmarks", user=USER, at=None):
        return storage.create_batch(user, collection, now_centiseconds() if at is None else at,
                                    LIFETIME)

    @staticmethod
    def _append(storage, batch_id, *items, collection="bookmarks", user=USER, at=None,
                **limits):
        storage.append_to_batch(user, collection, batch_id, list(items),
                                now_centiseconds() if at is None else at,
                                **{**UNLIMITED, **limits})

    @staticmethod
    def _commit(storage, batch_id, *items, collection="bookmarks", user=USER, at=None,
                **options):
        return storage.commit_batch(user, collection, batch_id, list(items),
                                    now_centiseconds() if at is None else at,
                                    **{**UNLIMITED, **options})

    # -- the life of a batch -----------------------------------------------------------

    def test_ids_are_opaque_url_safe_and_distinct(self, batches):
        ids = {self._open(batches) for _ in range(20)}
        assert len(ids) == 20
        for batch_id in ids:
            assert isinstance(batch_id, str) and 8 <= len(batch_id) <= 64
            assert all(c.isalnum() or c in "-_" for c in batch_id)

    def test_staged_items_are_invisible_until_the_commit(self, batches):
        before = batches.set_items(USER, "bookmarks", [ItemWrite("old", payload="o")],
                                   now_centiseconds(), rules=SYNC15_WRITES).timestamp
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="1"), ItemWrite("b", payload="2"))
        self._append(batches, batch_id, ItemWrite("c", payload="3", sortindex=7))
        assert _ids(batches.get_items(USER, "bookmarks", ItemQuery(), False)) == ["old"]
        assert batches.get_collection_timestamp(USER, "bookmarks") == before
        assert batches.get_storage_timestamp(USER) == before
        assert batches.get_total_usage(USER) == 1
        result = self._commit(batches, batch_id, ItemWrite("d", payload="4"))
        assert isinstance(result, WriteResult)
        stamp = result.timestamp
        assert stamp > before
        assert dict(result.modified) == dict.fromkeys("abcd", stamp)
        records = batches.get_items(USER, "bookmarks", ItemQuery(sort="oldest"), True)
        assert {r["id"]: r["modified"] for r in records} == {
            "old": before, "a": stamp, "b": stamp, "c": stamp, "d": stamp}
        assert batches.get_item(USER, "bookmarks", "c") == {
            "id": "c", "payload": "3", "sortindex": 7, "modified": stamp}
        assert batches.get_collection_timestamp(USER, "bookmarks") == stamp
        assert batches.get_storage_timestamp(USER) == stamp

    def test_a_committed_batch_is_gone(self, batches):
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="1"))
        self._commit(batches, batch_id)
        batches.delete_collection(USER, "bookmarks", now_centiseconds())
        with pytest.raises(BatchNotFound):
            self._append(batches, batch_id, ItemWrite("b", payload="2"))
        with pytest.raises(BatchNotFound):
            self._commit(batches, batch_id)
        assert batches.get_items(USER, "bookmarks", ItemQuery(), False) == []

    def test_commit_of_an_empty_batch(self, batches):
        batch_id = self._open(batches)
        at = now_centiseconds()
        result = self._commit(batches, batch_id, at=at)
        assert (result.timestamp, dict(result.modified)) == (at, {})
        assert batches.get_collection_timestamp(USER, "bookmarks") == at
        with pytest.raises(BatchNotFound):
            self._commit(batches, batch_id)

    # -- merging -------------------------------------------------------------------------

    def test_restaging_an_id_merges_into_that_id_only(self, batches):
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="a1", sortindex=1),
                     ItemWrite("b", payload="b1", sortindex=2, ttl=3600))
        self._append(batches, batch_id, ItemWrite("a", payload="a2"))
        self._append(batches, batch_id, ItemWrite("a", sortindex=5), ItemWrite("c", ttl=60))
        stamp = self._commit(batches, batch_id).timestamp
        assert batches.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "a2", "sortindex": 5, "modified": stamp}
        assert batches.get_item(USER, "bookmarks", "b") == {
            "id": "b", "payload": "b1", "sortindex": 2, "modified": stamp}
        assert batches.get_item(USER, "bookmarks", "c") == {
            "id": "c", "payload": "", "modified": stamp}

    def test_commit_items_win_field_by_field(self, batches):
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="staged", sortindex=1))
        stamp = self._commit(batches, batch_id, ItemWrite("a", payload="final"),
                             ItemWrite("z", sortindex=3)).timestamp
        assert batches.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "final", "sortindex": 1, "modified": stamp}
        assert batches.get_item(USER, "bookmarks", "z") == {
            "id": "z", "payload": "", "sortindex": 3, "modified": stamp}

    def test_commit_stamps_every_item_and_keeps_fields_not_staged(self, batches):
        old = batches.set_items(USER, "bookmarks", [
            ItemWrite("x", payload="kept", sortindex=4)], now_centiseconds(),
            rules=SYNC15_WRITES).timestamp
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("x", ttl=3600))
        stamp = self._commit(batches, batch_id).timestamp
        assert stamp > old
        assert batches.get_item(USER, "bookmarks", "x") == {
            "id": "x", "payload": "kept", "sortindex": 4, "modified": stamp}

    def test_a_committed_item_without_ttl_never_expires(self, batches):
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("forever", payload="x"))
        self._commit(batches, batch_id)
        (record,) = batches.export_records(USER, "bookmarks")
        assert record.expires == NEVER_EXPIRES
        far_future = int(time.time()) + 100 * 365 * 86400
        while batches.purge_expired(far_future):
            pass
        assert _ids(batches.get_items(USER, "bookmarks", ItemQuery(), False)) == ["forever"]

    def test_ttl_counts_from_the_commit(self, batches):
        staged_at = now_centiseconds() - 500 * 100  # staged 500 s ago
        batch_id = self._open(batches, at=staged_at)
        self._append(batches, batch_id, ItemWrite("h", payload="x", ttl=600), at=staged_at)
        before = int(time.time())
        self._commit(batches, batch_id)
        (record,) = batches.export_records(USER, "bookmarks")
        assert before + 600 - 1 <= record.expires <= int(time.time()) + 600

    def test_a_large_batch_commits_whole(self, batches):
        batch_id = self._open(batches)
        for start in range(0, 1234, 100):
            self._append(batches, batch_id, *[
                ItemWrite(f"r{n:04d}", payload=f"p{n}", sortindex=n)
                for n in range(start, min(start + 100, 1234))])
        result = self._commit(batches, batch_id, ItemWrite("r0600", payload="last word"))
        assert len(result.modified) == 1234
        assert batches.get_collection_counts(USER) == {"bookmarks": 1234}
        assert batches.get_items(USER, "bookmarks", ItemQuery(older=result.timestamp),
                                 False) == []
        assert batches.get_item(USER, "bookmarks", "r0600")["payload"] == "last word"
        assert batches.get_item(USER, "bookmarks", "r1233")["sortindex"] == 1233

    # -- scope and validity ------------------------------------------------------------

    def test_a_batch_belongs_to_one_user_and_collection(self, batches):
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="mine"))
        for user, collection in ((OTHER_USER, "bookmarks"), (USER, "history"),
                                 (USER, "never-written")):
            with pytest.raises(BatchNotFound):
                self._append(batches, batch_id, ItemWrite("b", payload="x"), user=user,
                             collection=collection)
            with pytest.raises(BatchNotFound):
                self._commit(batches, batch_id, user=user, collection=collection)
        assert batches.get_items(OTHER_USER, "bookmarks", ItemQuery(), False) == []
        self._commit(batches, batch_id)
        assert _ids(batches.get_items(USER, "bookmarks", ItemQuery(), False)) == ["a"]

    @pytest.mark.parametrize("batch_id", [
        "", "nope", "0" * 200, "../../etc", "MTUzNjE5ODk3NjkyMQ==", "1' OR '1'='1", "\u00e9",
        12345, None])
    def test_malformed_or_unknown_ids(self, batches, batch_id):
        with pytest.raises(BatchNotFound):
            self._append(batches, batch_id, ItemWrite("a", payload="x"))
        with pytest.raises(BatchNotFound):
            self._commit(batches, batch_id)

    def test_an_expired_batch_is_not_found(self, batches):
        at = now_centiseconds()
        batch_id = batches.create_batch(USER, "bookmarks", at, 60)
        self._append(batches, batch_id, ItemWrite("a", payload="x"), at=at + 5999)
        with pytest.raises(BatchNotFound):
            self._append(batches, batch_id, ItemWrite("b", payload="x"), at=at + 6000)
        with pytest.raises(BatchNotFound):
            self._commit(batches, batch_id, at=at + 6000)
        assert batches.get_items(USER, "bookmarks", ItemQuery(), False) == []

    def test_purge_removes_expired_batches(self, batches):
        long_ago = now_centiseconds() - 3 * 3600 * 100
        old = batches.create_batch(USER, "bookmarks", long_ago, LIFETIME)
        self._append(batches, old, ItemWrite("a", payload="x"), at=long_ago)
        current = self._open(batches)
        self._append(batches, current, ItemWrite("b", payload="y"))
        now_seconds = int(time.time())
        assert batches.purge_expired(now_seconds) >= 1  # the probe's batch is not expired
        assert batches.purge_expired(now_seconds) == 0
        self._commit(batches, current)
        assert _ids(batches.get_items(USER, "bookmarks", ItemQuery(), False)) == ["b"]

    # -- deletions drop open batches (SS-2) -----------------------------------------------

    def test_deleting_the_collection_drops_its_batches(self, batches):
        doomed = self._open(batches)
        self._append(batches, doomed, ItemWrite("a", payload="x"))
        elsewhere = self._open(batches, collection="history")
        self._append(batches, elsewhere, ItemWrite("h", payload="x"), collection="history")
        batches.delete_collection(USER, "bookmarks", now_centiseconds())
        with pytest.raises(BatchNotFound):
            self._commit(batches, doomed)
        assert batches.get_items(USER, "bookmarks", ItemQuery(), False) == []
        self._commit(batches, elsewhere, collection="history")
        assert _ids(batches.get_items(USER, "history", ItemQuery(), False)) == ["h"]

    def test_deleting_the_storage_drops_every_batch(self, batches):
        mine = self._open(batches)
        self._append(batches, mine, ItemWrite("a", payload="x"))
        theirs = self._open(batches, user=OTHER_USER)
        self._append(batches, theirs, ItemWrite("t", payload="x"), user=OTHER_USER)
        batches.delete_storage(USER, now_centiseconds())
        with pytest.raises(BatchNotFound):
            self._append(batches, mine, ItemWrite("b", payload="x"))
        with pytest.raises(BatchNotFound):
            self._commit(batches, mine)
        assert batches.get_collection_timestamps(USER) == {}
        self._commit(batches, theirs, user=OTHER_USER)
        assert _ids(batches.get_items(OTHER_USER, "bookmarks", ItemQuery(), False)) == ["t"]

    def test_deleting_the_user_drops_its_batches(self, batches):
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="x"))
        batches.delete_user(USER)
        with pytest.raises((BatchNotFound, UserDeleted)):
            self._commit(batches, batch_id)
        with pytest.raises(UserDeleted):
            self._open(batches)
        long_after = int(time.time()) + 365 * 86400
        while batches.purge_expired(long_after):
            pass
        assert batches.get_items(USER, "bookmarks", ItemQuery(), False) == []
        fresh = self._open(batches)
        with pytest.raises(BatchNotFound):
            self._commit(batches, batch_id)
        self._commit(batches, fresh)
        assert batches.get_items(USER, "bookmarks", ItemQuery(), False) == []

    # -- limits and quota -------------------------------------------------------------------

    def test_record_limit_counts_distinct_staged_ids(self, batches):
        batch_id = self._open(batches)
        limits = {"max_total_records": 3}
        self._append(batches, batch_id, ItemWrite("a", payload="1"),
                     ItemWrite("b", payload="2"), **limits)
        self._append(batches, batch_id, ItemWrite("a", payload="again"),
                     ItemWrite("c", payload="3"), **limits)
        with pytest.raises(BatchTooLarge) as refused:
            self._append(batches, batch_id, ItemWrite("d", payload="4"),
                         ItemWrite("a", sortindex=1), **limits)
        assert refused.value.records == 4
        with pytest.raises(BatchTooLarge):
            self._commit(batches, batch_id, ItemWrite("e", payload="5"), **limits)
        result = self._commit(batches, batch_id, ItemWrite("b", payload="final"), **limits)
        assert sorted(result.modified) == ["a", "b", "c"]
        assert "sortindex" not in batches.get_item(USER, "bookmarks", "a")

    def test_byte_limit_counts_staged_payload_bytes(self, batches):
        batch_id = self._open(batches)
        limits = {"max_total_bytes": 10}
        self._append(batches, batch_id, ItemWrite("a", payload="12345"), **limits)
        self._append(batches, batch_id, ItemWrite("b", payload="é234"), **limits)  # 5 bytes
        with pytest.raises(BatchTooLarge) as refused:
            self._append(batches, batch_id, ItemWrite("c", payload="x"), **limits)
        assert refused.value.bytes == 11
        # Re-staging replaces an id's bytes: a smaller payload makes room.
        self._append(batches, batch_id, ItemWrite("a", payload="1"),
                     ItemWrite("c", payload="xxxx"), **limits)
        with pytest.raises(BatchTooLarge):
            self._commit(batches, batch_id, ItemWrite("d", payload="z"), **limits)
        self._commit(batches, batch_id, **limits)
        assert batches.get_total_usage(USER) == 10

    def test_quota_counts_usage_and_what_the_batch_stages(self, batches):
        batches.set_items(USER, "history", [ItemWrite("h", payload="h" * 400)],
                          now_centiseconds(), rules=SYNC15_WRITES)
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="a" * 400))
        storage_kb = {"quota_kb": 1}
        with pytest.raises(QuotaExceeded) as refused:
            batches.append_to_batch(USER, "bookmarks", batch_id,
                                    [ItemWrite("b", payload="b" * 300)], now_centiseconds(),
                                    **storage_kb, **UNLIMITED)
        assert refused.value.used_bytes == 1100
        batches.append_to_batch(USER, "bookmarks", batch_id, [ItemWrite("b", payload="b")],
                                now_centiseconds(), **storage_kb, **UNLIMITED)
        with pytest.raises(QuotaExceeded):
            self._commit(batches, batch_id, ItemWrite("c", payload="c" * 300), **storage_kb)
        result = self._commit(batches, batch_id, **storage_kb)
        assert result.quota_left_kb == pytest.approx(1 - 801 / 1024)
        assert batches.get_total_usage(USER) == 801

    # -- preconditions and races ----------------------------------------------------------------

    def test_commit_checks_the_collection_and_leaves_the_batch_on_failure(self, batches):
        base = batches.set_items(USER, "bookmarks", [ItemWrite("x", payload="x")],
                                 now_centiseconds(), rules=SYNC15_WRITES).timestamp
        batch_id = self._open(batches)
        self._append(batches, batch_id, ItemWrite("a", payload="1"))
        newer = batches.set_items(USER, "bookmarks", [ItemWrite("y", payload="y")],
                                  now_centiseconds(), rules=SYNC15_WRITES).timestamp
        with pytest.raises(PreconditionFailed) as failure:
            self._commit(batches, batch_id, if_unmodified_since=base)
        assert failure.value.timestamp == newer
        assert batches.get_item(USER, "bookmarks", "a") is None
        assert self._commit(batches, batch_id, if_unmodified_since=newer).timestamp > newer
        assert batches.get_item(USER, "bookmarks", "a")["payload"] == "1"

    def test_racing_commits_are_each_whole_and_ordered(self, batches):
        ids = [self._open(batches) for _ in range(4)]
        for index, batch_id in enumerate(ids):
            for start in range(0, 300, 100):
                self._append(batches, batch_id, *[
                    ItemWrite(f"b{index}-{n}", payload=f"{index}") for n in range(start,
                                                                                   start + 100)])
        barrier = threading.Barrier(len(ids))
        results, errors = {}, []

        def commit(index):
            try:
                barrier.wait(timeout=30)
                results[index] = self._commit(batches, ids[index],
                                              ItemWrite("shared", payload=str(index)))
            except Exception as error:
                errors.append(error)

        threads = [threading.Thread(target=commit, args=(i,)) for i in range(len(ids))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        stamps = sorted(result.timestamp for result in results.values())
        assert len(set(stamps)) == len(ids)
        records = batches.get_items(USER, "bookmarks", ItemQuery(), True)
        by_batch = {}
        for record in records:
            if record["id"] != "shared":
                by_batch.setdefault(record["id"].split("-")[0], set()).add(record["modified"])
        assert {key: len(value) for key, value in by_batch.items()} == {
            f"b{index}": 1 for index in range(len(ids))}
        assert {index: by_batch[f"b{index}"] for index in results} == {
            index: {result.timestamp} for index, result in results.items()}
        last = max(results, key=lambda index: results[index].timestamp)
        assert batches.get_item(USER, "bookmarks", "shared")["payload"] == str(last)
        assert batches.get_collection_timestamp(USER, "bookmarks") == stamps[-1]
