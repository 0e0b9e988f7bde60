"""Conformance tests of the Sync 1.5 side of the storage interface, and of deleted users.

Part of :class:`syncserver.testing.storage_conformance.StorageConformanceTests`
(which inherits these classes): the write rules of :data:`SYNC15_WRITES`,
preconditions on one item, ``delete_collection``, ``delete_storage`` and the
storage timestamp, the inclusive ``modified`` bounds of 1.5 paging, the
1.5 user namespace, and the tombstones ``delete_user`` leaves. Batches are
in :mod:`syncserver.testing.storage_batches`.
"""

import threading
import time

import pytest

from syncserver.errors import NotSupported
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import (
    DELETED_USER_RETENTION_SECONDS,
    SYNC15_WRITES,
    ItemQuery,
    ItemWrite,
    PreconditionFailed,
    StoredRecord,
    UserDeleted,
    sync15_user_id,
)

USER = 1
OTHER_USER = 2


def _put(storage, collection, *items, at=None, since=None, user=USER, rules=SYNC15_WRITES,
         precondition="collection", quota_kb=None):
    return storage.set_items(user, collection, list(items),
                             now_centiseconds() if at is None else at,
                             if_unmodified_since=since, quota_kb=quota_kb, rules=rules,
                             precondition=precondition)


def _ids(records):
    return [record["id"] for record in records]


def _race(count, target):
    """Run ``target(i)`` in ``count`` threads started together; return (results, errors)."""
    barrier = threading.Barrier(count)
    results, errors = [], []

    def body(index):
        try:
            barrier.wait(timeout=30)
            results.append(target(index))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results, errors


class Sync15WriteConformanceTests:
    """``set_items(rules=SYNC15_WRITES)``, item preconditions, the 1.5 deletions and stamps."""

    # -- write rules ------------------------------------------------------------

    def test_new_item_without_payload_gets_an_empty_one_and_the_stamp(self, storage):
        at = now_centiseconds()
        result = _put(storage, "bookmarks", ItemWrite("a", sortindex=1), at=at)
        assert (result.timestamp, dict(result.modified)) == (at, {"a": at})
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "", "sortindex": 1, "modified": at}
        assert storage.get_collection_timestamp(USER, "bookmarks") == at
        assert storage.get_storage_timestamp(USER) == at

    def test_sortindex_write_stamps_the_item(self, storage):
        first = _put(storage, "bookmarks", ItemWrite("a", payload="x")).timestamp
        second = _put(storage, "bookmarks", ItemWrite("a", sortindex=5)).timestamp
        assert second > first
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "x", "sortindex": 5, "modified": second}
        # Sync 1.1 rules leave modified alone on the same write.
        third = storage.set_items(USER, "bookmarks", [ItemWrite("a", sortindex=6)],
                                  now_centiseconds())
        assert third.modified == {"a": second}

    def test_ttl_only_write_stamps_the_collection_not_the_item(self, storage):
        first = _put(storage, "bookmarks", ItemWrite("a", payload="x")).timestamp
        result = _put(storage, "bookmarks", ItemWrite("a", ttl=3600))
        assert result.timestamp > first
        assert result.modified == {"a": first}
        assert storage.get_item(USER, "bookmarks", "a")["modified"] == first
        assert storage.get_collection_timestamp(USER, "bookmarks") == result.timestamp
        assert storage.get_storage_timestamp(USER) == result.timestamp

    def test_expired_item_is_absent_to_a_metadata_write(self, storage):
        _put(storage, "bookmarks", ItemWrite("a", payload="old secret", sortindex=3, ttl=0))
        result = _put(storage, "bookmarks", ItemWrite("a", sortindex=4))
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "", "sortindex": 4, "modified": result.timestamp}
        assert storage.get_total_usage(USER) == 0

    def test_ttl_counts_from_the_write_stamp(self, storage):
        long_ago = now_centiseconds() - 100 * 100
        # T is 100 s ago: a ttl of 50 s has already run out.
        _put(storage, "history", ItemWrite("gone", payload="x", ttl=50), at=long_ago)
        _put(storage, "history", ItemWrite("kept", payload="x", ttl=3600), at=long_ago)
        assert _ids(storage.get_items(USER, "history", ItemQuery(), False)) == ["kept"]
        # The same write under the Sync 1.1 rules counts from the server's clock.
        storage.set_items(USER, "forms", [ItemWrite("f", payload="x", ttl=50)], long_ago)
        assert storage.get_item(USER, "forms", "f") is not None

    def test_ttl_zero_hides_at_once(self, storage):
        _put(storage, "history", ItemWrite("h", payload="x", ttl=0))
        assert storage.get_item(USER, "history", "h") is None

    def test_writes_in_one_stamp_and_strictly_after_the_last(self, storage):
        at = now_centiseconds()
        first = _put(storage, "bookmarks", ItemWrite("a", payload="1"), ItemWrite("b"), at=at)
        assert set(first.modified.values()) == {at}
        second = _put(storage, "history", ItemWrite("h", ttl=60), at=at)
        assert second.timestamp == at + 1
        assert storage.get_storage_timestamp(USER) == at + 1

    # -- precondition on one item ------------------------------------------------

    def test_item_precondition_zero_creates_only_if_absent(self, storage):
        created = _put(storage, "meta", ItemWrite("global", payload="one"), since=0,
                       precondition="item")
        with pytest.raises(PreconditionFailed) as failure:
            _put(storage, "meta", ItemWrite("global", payload="two"), since=0,
                 precondition="item")
        assert failure.value.timestamp == created.timestamp
        assert storage.get_item(USER, "meta", "global")["payload"] == "one"
        assert storage.get_collection_timestamp(USER, "meta") == created.timestamp

    def test_item_precondition_compares_the_item_not_the_collection(self, storage):
        stamp = _put(storage, "crypto", ItemWrite("keys", payload="k1")).timestamp
        later = _put(storage, "crypto", ItemWrite("other", payload="o")).timestamp
        assert later > stamp
        result = _put(storage, "crypto", ItemWrite("keys", payload="k2"), since=stamp,
                      precondition="item")
        assert result.timestamp > later
        with pytest.raises(PreconditionFailed) as failure:
            _put(storage, "crypto", ItemWrite("keys", payload="k3"), since=result.timestamp - 1,
                 precondition="item")
        assert failure.value.timestamp == result.timestamp
        assert storage.get_item(USER, "crypto", "keys")["payload"] == "k2"

    def test_item_precondition_sees_an_expired_item_as_missing(self, storage):
        _put(storage, "meta", ItemWrite("global", payload="old", ttl=0))
        _put(storage, "meta", ItemWrite("global", payload="new"), since=0, precondition="item")
        assert storage.get_item(USER, "meta", "global")["payload"] == "new"

    def test_item_precondition_needs_exactly_one_item(self, storage):
        with pytest.raises(ValueError):
            _put(storage, "meta", ItemWrite("a", payload="x"), ItemWrite("b", payload="y"),
                 since=0, precondition="item")

    def test_racing_creators_of_one_item_have_one_winner(self, storage):
        def create(index):
            try:
                return _put(storage, "meta", ItemWrite("global", payload=f"writer {index}"),
                            since=0, precondition="item").timestamp
            except PreconditionFailed:
                return None

        results, errors = _race(8, create)
        assert errors == []
        winners = [stamp for stamp in results if stamp is not None]
        assert len(winners) == 1
        record = storage.get_item(USER, "meta", "global")
        assert record["modified"] == winners[0]

    # -- delete_item on one item --------------------------------------------------

    def test_delete_item_with_item_precondition(self, storage):
        stamp = _put(storage, "bookmarks", ItemWrite("a", payload="x")).timestamp
        later = _put(storage, "bookmarks", ItemWrite("b", payload="y")).timestamp
        with pytest.raises(PreconditionFailed) as failure:
            storage.delete_item(USER, "bookmarks", "a", now_centiseconds(),
                                if_unmodified_since=stamp - 1, precondition="item")
        assert failure.value.timestamp == stamp
        deleted = storage.delete_item(USER, "bookmarks", "a", now_centiseconds(),
                                      if_unmodified_since=stamp, precondition="item")
        assert deleted > later
        assert storage.get_item(USER, "bookmarks", "a") is None
        assert storage.get_collection_timestamp(USER, "bookmarks") == deleted
        assert storage.get_storage_timestamp(USER) == deleted

    def test_delete_item_missing_or_expired_is_none_and_stamps_nothing(self, storage):
        stamp = _put(storage, "bookmarks", ItemWrite("dead", payload="x", ttl=0)).timestamp
        for item_id in ("dead", "never"):
            assert storage.delete_item(USER, "bookmarks", item_id, now_centiseconds(),
                                       if_unmodified_since=0, precondition="item") is None
        assert storage.delete_item(USER, "nowhere", "x", now_centiseconds(),
                                   precondition="item") is None
        assert storage.get_collection_timestamp(USER, "bookmarks") == stamp
        assert storage.get_storage_timestamp(USER) == stamp

    # -- delete_collection ----------------------------------------------------------

    def test_delete_collection_forgets_it(self, storage):
        _put(storage, "bookmarks", *[ItemWrite(str(n), payload="xx") for n in range(5)])
        history = _put(storage, "history", ItemWrite("h", payload="x")).timestamp
        stamp = storage.delete_collection(USER, "bookmarks", now_centiseconds())
        assert stamp > history
        assert storage.get_collection_timestamps(USER) == {"history": history}
        assert storage.get_collection_timestamp(USER, "bookmarks") is None
        assert storage.get_items(USER, "bookmarks", ItemQuery(), False) == []
        assert storage.get_collection_counts(USER) == {"history": 1}
        assert storage.get_storage_timestamp(USER) == stamp
        assert storage.check_quota(USER, 1) == 1 - 1 / 1024
        # Written again, it starts afresh, stamped after the deletion.
        again = _put(storage, "bookmarks", ItemWrite("n", payload="y"), at=history)
        assert again.timestamp > stamp
        assert _ids(storage.get_items(USER, "bookmarks", ItemQuery(), False)) == ["n"]

    def test_delete_collection_that_does_not_exist_still_stamps(self, storage):
        last = _put(storage, "history", ItemWrite("h", payload="x")).timestamp
        for name in ("bookmarks", "never-written"):
            stamp = storage.delete_collection(USER, name, last)
            assert stamp > last
            assert storage.get_storage_timestamp(USER) == stamp
            last = stamp
        assert storage.get_collection_timestamps(USER) == {"history": last - 2}

    def test_storage_timestamp_never_goes_back_after_deleting_the_newest(self, storage):
        _put(storage, "history", ItemWrite("h", payload="x"))
        newest = _put(storage, "tabs", ItemWrite("t", payload="x")).timestamp
        stamp = storage.delete_collection(USER, "tabs", newest - 500)
        assert stamp > newest
        assert storage.get_storage_timestamp(USER) == stamp

    def test_delete_collection_precondition(self, storage):
        stamp = _put(storage, "bookmarks", ItemWrite("a", payload="x")).timestamp
        _put(storage, "history", ItemWrite("h", payload="x"))
        with pytest.raises(PreconditionFailed) as failure:
            storage.delete_collection(USER, "bookmarks", now_centiseconds(),
                                      if_unmodified_since=stamp - 1)
        assert failure.value.timestamp == stamp
        assert storage.get_item(USER, "bookmarks", "a") is not None
        assert storage.delete_collection(USER, "bookmarks", now_centiseconds(),
                                         if_unmodified_since=stamp) > stamp
        assert storage.delete_collection(USER, "unknown", now_centiseconds(),
                                         if_unmodified_since=0)

    def test_delete_collection_keeps_other_users_and_the_1_1_collection_delete_keeps_listing(
            self, storage):
        _put(storage, "bookmarks", ItemWrite("a", payload="x"), user=OTHER_USER)
        _put(storage, "bookmarks", ItemWrite("a", payload="x"))
        storage.delete_collection(USER, "bookmarks", now_centiseconds())
        assert storage.get_item(OTHER_USER, "bookmarks", "a") is not None
        emptied = storage.delete_items(OTHER_USER, "bookmarks", ItemQuery(), now_centiseconds())
        assert storage.get_collection_timestamps(OTHER_USER) == {"bookmarks": emptied}

    # -- delete_storage and the storage timestamp -------------------------------------

    def test_storage_timestamp(self, storage):
        assert storage.get_storage_timestamp(USER) == 0
        first = storage.set_items(USER, "bookmarks", [ItemWrite("a", payload="x")],
                                  now_centiseconds()).timestamp
        assert storage.get_storage_timestamp(USER) == first
        # A Sync 1.1 write that stamps nothing leaves it.
        storage.set_items(USER, "bookmarks", [ItemWrite("a", sortindex=2)], first + 100)
        assert storage.get_storage_timestamp(USER) == first
        second = _put(storage, "history", ItemWrite("h", payload="x")).timestamp
        assert storage.get_storage_timestamp(USER) == second == max(
            storage.get_collection_timestamps(USER).values())
        assert storage.get_storage_timestamp(OTHER_USER) == 0

    def test_delete_storage_returns_its_stamp_and_checks_the_storage_timestamp(self, storage):
        _put(storage, "bookmarks", ItemWrite("a", payload="x"))
        last = _put(storage, "history", ItemWrite("h", payload="x")).timestamp
        with pytest.raises(PreconditionFailed) as failure:
            storage.delete_storage(USER, now_centiseconds(), if_unmodified_since=last - 1)
        assert failure.value.timestamp == last
        assert storage.get_item(USER, "history", "h") is not None
        stamp = storage.delete_storage(USER, last - 300, if_unmodified_since=last)
        assert stamp > last
        assert storage.get_storage_timestamp(USER) == stamp
        assert storage.get_collection_timestamps(USER) == {}
        # Deleting nothing is stamped all the same, and never backwards.
        again = storage.delete_storage(USER, stamp - 300)
        assert again > stamp
        assert storage.get_storage_timestamp(USER) == again
        assert _put(storage, "tabs", ItemWrite("t", payload="x"), at=again).timestamp > again

    def test_deleting_ids_that_match_nothing_still_stamps_the_collection(self, storage):
        """Sync 1.5's DELETE ?ids=: the collection keeps the request's timestamp, and
        a collection the user does not have stays absent."""
        first = _put(storage, "bookmarks", ItemWrite("a", payload="x")).timestamp
        stamp = storage.delete_items(USER, "bookmarks", ItemQuery(ids=["zz"]), first + 100,
                                     stamp_always=True)
        assert stamp == first + 100
        assert storage.get_collection_timestamps(USER) == {"bookmarks": stamp}
        assert storage.get_storage_timestamp(USER) == stamp
        assert storage.get_item(USER, "bookmarks", "a") is not None
        # Never backwards, whatever the clock says.
        again = storage.delete_items(USER, "bookmarks", ItemQuery(ids=["zz"]), stamp - 300,
                                     stamp_always=True)
        assert again > stamp
        assert storage.delete_items(USER, "history", ItemQuery(ids=["zz"]), again + 100,
                                    stamp_always=True) is None
        assert storage.delete_items(USER, "bookmarks", ItemQuery(ids=["zz"]), again + 200) is None
        assert storage.get_collection_timestamps(USER) == {"bookmarks": again}

    def test_delete_storage_of_a_new_user_is_stamped_now(self, storage):
        at = now_centiseconds()
        assert storage.delete_storage(OTHER_USER, at) == at
        assert storage.get_storage_timestamp(OTHER_USER) == at

    # -- the inclusive modified bounds of 1.5 paging ------------------------------------

    def _generations(self, storage):
        at = now_centiseconds()
        return [_put(storage, "history", *[ItemWrite(f"{g}{n}", payload="x") for n in range(3)],
                     at=at + 10 * g).timestamp for g in range(3)]

    def test_modified_bounds_are_inclusive(self, storage):
        t0, t1, t2 = self._generations(storage)
        query = ItemQuery(modified_at_least=t1, sort="oldest")
        assert _ids(storage.get_items(USER, "history", query, False)) == [
            "10", "11", "12", "20", "21", "22"]
        query = ItemQuery(modified_at_most=t1, sort="newest")
        assert _ids(storage.get_items(USER, "history", query, False)) == [
            "12", "11", "10", "02", "01", "00"]
        query = ItemQuery(modified_at_least=t1, modified_at_most=t1, newer=t0, older=t2)
        assert sorted(_ids(storage.get_items(USER, "history", query, False))) == [
            "10", "11", "12"]
        assert ItemQuery(modified_at_most=t1).has_filters()
        assert ItemQuery(modified_at_least=t1).has_filters()

    def test_modified_bounds_apply_before_offset_and_limit(self, storage):
        _t0, t1, _t2 = self._generations(storage)
        # An offset token "t1:1" with sort=newest: modified <= t1, skip 1.
        query = ItemQuery(modified_at_most=t1, sort="newest", offset=1, limit=3)
        assert _ids(storage.get_items(USER, "history", query, False)) == ["11", "10", "02"]
        stream = storage.stream_items(USER, "history", query, True)
        records = [record for chunk in stream for record in chunk]
        assert stream.count == 3 and _ids(records) == ["11", "10", "02"]
        query = ItemQuery(modified_at_least=t1, sort="oldest", offset=2)
        assert _ids(storage.get_items(USER, "history", query, False)) == ["12", "20", "21", "22"]

    # -- the 1.5 namespace ---------------------------------------------------------------

    def test_sync15_user_ids_are_apart_from_sync11_accounts(self, storage):
        assert sync15_user_id(7) == -7 == sync15_user_id("7")
        modern = sync15_user_id(USER)
        _put(storage, "bookmarks", ItemWrite("a", payload="1.5"), user=modern)
        storage.set_items(USER, "bookmarks", [ItemWrite("a", payload="1.1")], now_centiseconds())
        assert storage.get_item(modern, "bookmarks", "a")["payload"] == "1.5"
        assert storage.get_item(USER, "bookmarks", "a")["payload"] == "1.1"
        storage.delete_storage(modern, now_centiseconds())
        assert storage.get_item(USER, "bookmarks", "a")["payload"] == "1.1"
        assert storage.get_collection_timestamps(modern) == {}
        big = sync15_user_id(2 ** 40)
        result = _put(storage, "tabs", ItemWrite("t", payload="x"), user=big)
        assert storage.get_storage_timestamp(big) == result.timestamp


class DeletedUserConformanceTests:
    """``delete_user`` leaves a tombstone: writes are refused until it is purged or restored."""

    def _writes(self, storage, user):
        now = now_centiseconds()
        yield lambda: storage.set_items(user, "bookmarks", [ItemWrite("a", payload="x")], now)
        yield lambda: _put(storage, "bookmarks", ItemWrite("a", payload="x"), user=user)
        yield lambda: storage.delete_item(user, "bookmarks", "a", now)
        yield lambda: storage.delete_items(user, "bookmarks", ItemQuery(), now)
        yield lambda: storage.delete_collection(user, "bookmarks", now)
        yield lambda: storage.delete_storage(user, now)

    def test_writes_for_a_deleted_user_are_refused(self, storage):
        _put(storage, "bookmarks", ItemWrite("a", payload="x"))
        storage.delete_user(USER)
        for write in self._writes(storage, USER):
            with pytest.raises(UserDeleted):
                write()
        try:
            storage.set_user_quota(USER, 10)
        except NotSupported:
            pass
        except UserDeleted:
            pass
        else:
            pytest.fail("set_user_quota accepted a deleted user")
        assert storage.get_collection_timestamps(USER) == {}
        assert storage.get_item(USER, "bookmarks", "a") is None
        assert storage.get_storage_timestamp(USER) == 0
        assert storage.get_user_quota(USER) is None
        # Deleting again is harmless; other users are untouched.
        storage.delete_user(USER)
        _put(storage, "bookmarks", ItemWrite("a", payload="x"), user=OTHER_USER)

    def test_a_user_deleted_before_writing_anything_is_refused_too(self, storage):
        storage.delete_user(OTHER_USER)
        with pytest.raises(UserDeleted):
            _put(storage, "tabs", ItemWrite("t", payload="x"), user=OTHER_USER)
        assert storage.get_collection_timestamps(OTHER_USER) == {}

    def test_a_write_racing_the_deletion_leaves_nothing_behind(self, storage):
        _put(storage, "bookmarks", ItemWrite("seed", payload="x"))

        def act(index):
            if index == 0:
                return storage.delete_user(USER)
            try:
                return _put(storage, "bookmarks", ItemWrite(f"w{index}", payload="x"))
            except UserDeleted:
                return None

        _results, errors = _race(6, act)
        assert errors == []
        assert storage.get_items(USER, "bookmarks", ItemQuery(), False) == []
        assert storage.get_collection_timestamps(USER) == {}

    def test_purge_removes_tombstones_after_the_retention_only(self, storage):
        storage.delete_user(USER)
        soon = int(time.time()) + DELETED_USER_RETENTION_SECONDS - 3600
        assert storage.purge_expired(soon) == 0
        with pytest.raises(UserDeleted):
            _put(storage, "bookmarks", ItemWrite("a", payload="x"))
        later = int(time.time()) + DELETED_USER_RETENTION_SECONDS + 10
        assert storage.purge_expired(later) == 1
        assert storage.purge_expired(later) == 0
        assert _put(storage, "bookmarks", ItemWrite("a", payload="x")).modified["a"]

    def test_restore_clears_the_tombstone(self, storage):
        storage.delete_user(USER)
        old = now_centiseconds() - 10_000
        storage.restore_records(USER, "forms", [StoredRecord(id="f", modified=old,
                                                             payload="x")], old)
        assert storage.get_item(USER, "forms", "f")["payload"] == "x"
        assert _put(storage, "forms", ItemWrite("g", payload="y")).timestamp > old
