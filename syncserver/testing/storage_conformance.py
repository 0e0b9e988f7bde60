"""The conformance suite every storage backend must pass.

Subclass :class:`StorageConformanceTests` in a test module and provide a
``storage`` fixture that yields a fresh, empty backend instance::

    from syncserver.testing.storage_conformance import StorageConformanceTests

    class TestMyStorage(StorageConformanceTests):
        @pytest.fixture
        def storage(self):
            backend = MyStorage.from_settings(...)
            yield backend
            backend.close()

Each test checks one rule of :mod:`syncserver.storage` through the public
interface only, so it holds for any backend. The quota and streaming rules
are in :mod:`syncserver.testing.storage_quota_stream`, the Sync 1.5 write
rules and deleted users in :mod:`syncserver.testing.storage_sync15`, batch
uploads in :mod:`syncserver.testing.storage_batches`; all are inherited here.
"""

import contextlib
import random
import threading
import time

import pytest

from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import (
    NEVER_EXPIRES,
    ItemQuery,
    ItemWrite,
    PreconditionFailed,
    StoredRecord,
    UserDeleted,
    WriteResult,
)
from syncserver.testing.storage_batches import BatchConformanceTests
from syncserver.testing.storage_quota_stream import (
    QuotaConformanceTests,
    StreamConformanceTests,
)
from syncserver.testing.storage_sync15 import (
    DeletedUserConformanceTests,
    Sync15WriteConformanceTests,
)

USER = 1
OTHER_USER = 2
#: User ids are BIGINT-sized: the auth backend may hand out large ones.
BIG_USER = 2 ** 40 + 7
MAX_PAYLOAD = "x" * (256 * 1024)


def now():
    return now_centiseconds()


def ids_of(records):
    return [record["id"] for record in records]


def id_set(records):
    return set(ids_of(records))


def put(storage, collection, *items, user=USER, at=None, since=None):
    """Write ``items`` (ItemWrite or dicts) and return the WriteResult."""
    writes = [item if isinstance(item, ItemWrite) else ItemWrite(**item) for item in items]
    return storage.set_items(user, collection, writes, now() if at is None else at,
                             if_unmodified_since=since)


def get(storage, collection, user=USER, full=False, **query):
    return storage.get_items(user, collection, ItemQuery(**query), full)


def run_threads(count, target):
    """Run ``target(i)`` in ``count`` threads started together; return exceptions raised."""
    barrier = threading.Barrier(count)
    errors = []

    def body(index):
        try:
            barrier.wait(timeout=30)
            target(index)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a writer thread hung"
    return errors


class StorageConformanceTests(QuotaConformanceTests, StreamConformanceTests,
                              Sync15WriteConformanceTests, DeletedUserConformanceTests,
                              BatchConformanceTests):
    """Behaviour every :class:`~syncserver.storage.StorageBackend` must show."""

    # -- empty state and health --------------------------------------------

    def test_is_healthy(self, storage):
        assert storage.is_healthy() is True

    def test_new_user_has_nothing(self, storage):
        assert storage.get_collection_timestamps(USER) == {}
        assert storage.get_collection_counts(USER) == {}
        assert storage.get_collection_usage(USER) == {}
        assert storage.get_total_usage(USER) == 0
        assert storage.get_collection_timestamp(USER, "bookmarks") is None
        assert get(storage, "bookmarks") == []
        assert storage.get_item(USER, "bookmarks", "a") is None

    def test_reading_unknown_collection_creates_nothing(self, storage):
        assert get(storage, "never-seen.coll_1", full=True) == []
        assert storage.get_item(USER, "never-seen.coll_1", "x") is None
        assert storage.get_collection_timestamp(USER, "never-seen.coll_1") is None
        assert storage.get_collection_timestamps(USER) == {}

    # -- timestamps --------------------------------------------------------

    def test_write_is_stamped_with_now(self, storage):
        at = now()
        result = put(storage, "bookmarks", {"id": "a", "payload": "x"}, at=at)
        assert isinstance(result, WriteResult)
        assert result.timestamp == at
        assert result.modified == {"a": at}
        assert storage.get_item(USER, "bookmarks", "a")["modified"] == at
        assert storage.get_collection_timestamp(USER, "bookmarks") == at
        assert storage.get_collection_timestamps(USER) == {"bookmarks": at}

    def test_writes_in_the_same_now_are_strictly_increasing(self, storage):
        at = now()
        first = put(storage, "bookmarks", {"id": "a", "payload": "1"}, at=at).timestamp
        second = put(storage, "bookmarks", {"id": "b", "payload": "2"}, at=at).timestamp
        third = put(storage, "history", {"id": "c", "payload": "3"}, at=at).timestamp
        assert first == at
        assert second == at + 1
        assert third == at + 2
        assert storage.get_collection_timestamps(USER) == {"bookmarks": second, "history": third}

    def test_timestamps_never_go_backwards_when_the_clock_does(self, storage):
        at = now()
        first = put(storage, "bookmarks", {"id": "a", "payload": "1"}, at=at).timestamp
        second = put(storage, "bookmarks", {"id": "a", "payload": "2"}, at=at - 5000).timestamp
        assert second == first + 1
        assert storage.get_item(USER, "bookmarks", "a")["modified"] == second
        deleted = storage.delete_item(USER, "bookmarks", "a", at - 9000)
        assert deleted == second + 1

    def test_stamps_are_ints(self, storage):
        result = put(storage, "bookmarks", {"id": "a", "payload": "x", "sortindex": 3})
        record = storage.get_item(USER, "bookmarks", "a")
        assert type(result.timestamp) is int
        assert type(record["modified"]) is int
        assert type(record["sortindex"]) is int
        assert type(storage.get_collection_timestamps(USER)["bookmarks"]) is int

    # -- records -------------------------------------------------------------

    def test_full_record_has_every_non_null_field_and_nothing_else(self, storage):
        stamp = put(storage, "bookmarks", {
            "id": "a", "payload": "data", "sortindex": 5, "parentid": "p",
            "predecessorid": "q", "ttl": 3600}).timestamp
        expected = {"id": "a", "payload": "data", "sortindex": 5, "parentid": "p",
                    "predecessorid": "q", "modified": stamp}
        assert storage.get_item(USER, "bookmarks", "a") == expected
        assert get(storage, "bookmarks", full=True) == [expected]
        assert get(storage, "bookmarks") == [{"id": "a"}]

    def test_null_fields_are_left_out(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": ""}).timestamp
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "", "modified": stamp}

    def test_new_item_without_payload(self, storage):
        at = now()
        result = put(storage, "bookmarks", {"id": "a", "sortindex": 1, "parentid": "p"}, at=at)
        assert result.timestamp == at
        assert result.modified == {"a": None}
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "sortindex": 1, "parentid": "p"}
        # Nothing was stamped.
        assert storage.get_collection_timestamp(USER, "bookmarks") is None
        assert "bookmarks" not in storage.get_collection_timestamps(USER)
        assert storage.get_collection_counts(USER) == {"bookmarks": 1}
        assert storage.get_total_usage(USER) == 0

    # -- partial updates -------------------------------------------------------

    def test_metadata_only_write_keeps_modified_and_collection_timestamp(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x", "parentid": "p"}).timestamp
        later = stamp + 500
        result = put(storage, "bookmarks", {"id": "a", "sortindex": 2}, at=later)
        assert result.timestamp == later
        assert result.modified == {"a": stamp}
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "x", "parentid": "p", "sortindex": 2, "modified": stamp}
        assert storage.get_collection_timestamp(USER, "bookmarks") == stamp
        assert storage.get_collection_timestamps(USER) == {"bookmarks": stamp}
        # The next stamped write is still only after the last stamp, not `later`.
        next_write = put(storage, "bookmarks", {"id": "b", "payload": "y"}, at=stamp)
        assert next_write.timestamp == stamp + 1

    def test_partial_update_keeps_unspecified_fields(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "x", "sortindex": 1, "parentid": "p",
                                   "predecessorid": "q"})
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "y"}).timestamp
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "y", "sortindex": 1, "parentid": "p", "predecessorid": "q",
            "modified": stamp}
        put(storage, "bookmarks", {"id": "a", "parentid": "p2"})
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "y", "sortindex": 1, "parentid": "p2", "predecessorid": "q",
            "modified": stamp}

    def test_partial_update_keeps_the_ttl(self, storage):
        put(storage, "bookmarks", {"id": "short", "payload": "x", "ttl": 3600},
            {"id": "forever", "payload": "x"})
        put(storage, "bookmarks", {"id": "short", "sortindex": 4, "payload": "y"},
            {"id": "forever", "sortindex": 4, "payload": "y"})
        assert id_set(get(storage, "bookmarks")) == {"short", "forever"}
        # Still due to expire within the hour; "forever" never expires.
        in_two_hours = int(time.time()) + 7200
        assert storage.purge_expired(in_two_hours) == 1
        assert ids_of(get(storage, "bookmarks")) == ["forever"]
        assert storage.purge_expired(int(time.time()) + 10 * 365 * 86400) == 0

    def test_ttl_update_alone_expires_an_item(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x"}).timestamp
        result = put(storage, "bookmarks", {"id": "a", "ttl": 0})
        assert result.modified == {"a": stamp}
        assert storage.get_item(USER, "bookmarks", "a") is None

    def test_duplicate_ids_apply_in_order_last_wins(self, storage):
        result = put(storage, "bookmarks",
                     {"id": "a", "payload": "first", "sortindex": 1, "parentid": "p"},
                     {"id": "b", "payload": "b"},
                     {"id": "a", "payload": "second", "sortindex": 2},
                     {"id": "a", "predecessorid": "q"})
        assert result.modified == {"a": result.timestamp, "b": result.timestamp}
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "second", "sortindex": 2, "parentid": "p",
            "predecessorid": "q", "modified": result.timestamp}
        assert storage.get_collection_counts(USER) == {"bookmarks": 2}

    def test_batch_mixing_payload_and_metadata_only_items(self, storage):
        old = put(storage, "bookmarks", {"id": "old", "payload": "o"}).timestamp
        result = put(storage, "bookmarks", {"id": "old", "sortindex": 3},
                     {"id": "new", "payload": "n"}, {"id": "bare", "parentid": "p"})
        assert result.timestamp > old
        assert result.modified == {"old": old, "new": result.timestamp, "bare": None}
        assert storage.get_collection_timestamp(USER, "bookmarks") == result.timestamp

    # -- ttl -------------------------------------------------------------------

    def test_ttl_zero_is_invisible_at_once_but_stamps_the_collection(self, storage):
        stamp = put(storage, "bookmarks", {"id": "gone", "payload": "x", "ttl": 0}).timestamp
        assert storage.get_item(USER, "bookmarks", "gone") is None
        assert get(storage, "bookmarks") == []
        assert get(storage, "bookmarks", ids=("gone",)) == []
        assert storage.get_collection_counts(USER) == {}
        assert storage.get_collection_usage(USER) == {}
        assert storage.get_total_usage(USER) == 0
        assert storage.get_collection_timestamps(USER) == {"bookmarks": stamp}
        assert storage.get_collection_timestamp(USER, "bookmarks") == stamp

    def test_positive_ttl_is_visible(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "x", "ttl": 3600})
        assert ids_of(get(storage, "bookmarks")) == ["a"]
        assert storage.get_collection_counts(USER) == {"bookmarks": 1}

    def test_expired_item_rewritten_with_payload_is_new(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "old", "sortindex": 5,
                                   "parentid": "p", "predecessorid": "q", "ttl": 0})
        result = put(storage, "bookmarks", {"id": "a", "payload": "new"})
        assert storage.get_item(USER, "bookmarks", "a") == {
            "id": "a", "payload": "new", "modified": result.timestamp}
        # The old ttl went with it: the item now never expires.
        assert storage.purge_expired(int(time.time()) + 10 * 365 * 86400) == 0

    def test_expired_item_rewritten_without_payload_is_new(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "old", "parentid": "p", "ttl": 0})
        result = put(storage, "bookmarks", {"id": "a", "sortindex": 3})
        assert result.modified == {"a": None}
        assert storage.get_item(USER, "bookmarks", "a") == {"id": "a", "sortindex": 3}
        assert storage.get_total_usage(USER) == 0

    # -- filters -------------------------------------------------------------

    def _three_generations(self, storage):
        at = now()
        stamps = [put(storage, "history", {"id": name, "payload": name}, at=at + 10 * i).timestamp
                  for i, name in enumerate(("a", "b", "c"))]
        return stamps

    def test_newer_and_older_are_strict(self, storage):
        t1, t2, t3 = self._three_generations(storage)
        assert id_set(get(storage, "history", newer=t1)) == {"b", "c"}
        assert id_set(get(storage, "history", newer=t1 - 1)) == {"a", "b", "c"}
        assert id_set(get(storage, "history", newer=t3)) == set()
        assert id_set(get(storage, "history", older=t3)) == {"a", "b"}
        assert id_set(get(storage, "history", older=t1)) == set()
        assert id_set(get(storage, "history", newer=t1, older=t3)) == {"b"}
        assert id_set(get(storage, "history", newer=t2 - 1, older=t2 + 1)) == {"b"}

    def test_sort_orders(self, storage):
        t1, t2, t3 = self._three_generations(storage)
        put(storage, "history", {"id": "a", "sortindex": 2}, {"id": "b", "sortindex": 3},
            {"id": "c", "sortindex": 1})
        assert ids_of(get(storage, "history", sort="oldest")) == ["a", "b", "c"]
        assert ids_of(get(storage, "history", sort="newest")) == ["c", "b", "a"]
        assert ids_of(get(storage, "history", sort="index")) == ["b", "a", "c"]
        assert [r["modified"] for r in get(storage, "history", full=True, sort="oldest")] == [
            t1, t2, t3]

    def _sortindexes(self, storage):
        put(storage, "bookmarks", *[{"id": str(i), "payload": "x", "sortindex": i}
                                    for i in (1, 2, 3, 4)])

    def test_limit_and_offset_paging(self, storage):
        self._sortindexes(storage)
        assert ids_of(get(storage, "bookmarks", sort="index", limit=2)) == ["4", "3"]
        assert ids_of(get(storage, "bookmarks", sort="index", limit=2, offset=2)) == ["2", "1"]
        assert ids_of(get(storage, "bookmarks", sort="index", limit=3, offset=3)) == ["1"]
        assert get(storage, "bookmarks", sort="index", limit=2, offset=4) == []
        assert ids_of(get(storage, "bookmarks", sort="index", offset=1)) == ["3", "2", "1"]
        assert len(get(storage, "bookmarks", limit=3)) == 3
        assert len(get(storage, "bookmarks", offset=3)) == 1
        assert len(get(storage, "bookmarks", limit=10 ** 12)) == 4
        assert get(storage, "bookmarks", limit=10 ** 12, offset=10 ** 12) == []

    def test_paging_is_deterministic_when_sort_keys_tie(self, storage):
        put(storage, "bookmarks", *[{"id": f"i{n:02d}", "payload": "x", "sortindex": n % 2}
                                    for n in range(11)])
        for sort in ("newest", "oldest", "index", None):
            pages = [ids_of(get(storage, "bookmarks", sort=sort, limit=3, offset=offset))
                     for offset in range(0, 12, 3)]
            seen = [item_id for page in pages for item_id in page]
            assert sorted(seen) == [f"i{n:02d}" for n in range(11)], sort
            assert [len(page) for page in pages] == [3, 3, 3, 2]

    def test_ids_filter(self, storage):
        self._sortindexes(storage)
        assert id_set(get(storage, "bookmarks", ids=("1", "3", "missing"))) == {"1", "3"}
        assert get(storage, "bookmarks", ids=()) == []
        assert get(storage, "bookmarks", ids=("",)) == []
        assert ids_of(get(storage, "bookmarks", ids=("4", "1", "2"), sort="index",
                          limit=1, offset=1)) == ["2"]

    def test_ids_filter_with_a_thousand_ids(self, storage):
        put(storage, "bookmarks", *[{"id": f"id{n}", "payload": "x"} for n in range(0, 100, 10)])
        wanted = tuple(f"id{n}" for n in range(1000))
        assert id_set(get(storage, "bookmarks", ids=wanted)) == {
            f"id{n}" for n in range(0, 100, 10)}

    def test_parentid_and_predecessorid_filters(self, storage):
        put(storage, "bookmarks",
            {"id": "a", "payload": "x", "parentid": "folder", "predecessorid": "z"},
            {"id": "b", "payload": "x", "parentid": "folder", "predecessorid": "a"},
            {"id": "c", "payload": "x", "parentid": "other", "predecessorid": "a"},
            {"id": "d", "payload": "x"})
        assert id_set(get(storage, "bookmarks", parentid="folder")) == {"a", "b"}
        assert id_set(get(storage, "bookmarks", predecessorid="a")) == {"b", "c"}
        assert id_set(get(storage, "bookmarks", parentid="folder", predecessorid="a")) == {"b"}
        assert get(storage, "bookmarks", parentid="nothing") == []

    def test_index_above_and_below_are_strict(self, storage):
        self._sortindexes(storage)
        assert id_set(get(storage, "bookmarks", index_above=2)) == {"3", "4"}
        assert id_set(get(storage, "bookmarks", index_below=3)) == {"1", "2"}
        assert id_set(get(storage, "bookmarks", index_above=1, index_below=4)) == {"2", "3"}
        assert id_set(get(storage, "bookmarks", index_above=2.5)) == {"3", "4"}
        assert id_set(get(storage, "bookmarks", index_below=2.5)) == {"1", "2"}
        assert id_set(get(storage, "bookmarks", index_above=-1000)) == {"1", "2", "3", "4"}

    def test_negative_and_extreme_sortindexes(self, storage):
        put(storage, "bookmarks", {"id": "low", "payload": "x", "sortindex": -999999999},
            {"id": "high", "payload": "x", "sortindex": 999999999})
        assert ids_of(get(storage, "bookmarks", sort="index")) == ["high", "low"]
        assert ids_of(get(storage, "bookmarks", index_below=0)) == ["low"]

    def test_filters_combine(self, storage):
        t1, _t2, _t3 = self._three_generations(storage)
        put(storage, "history", {"id": "a", "parentid": "p", "sortindex": 1},
            {"id": "b", "parentid": "p", "sortindex": 2}, {"id": "c", "parentid": "p",
                                                           "sortindex": 3})
        assert ids_of(get(storage, "history", newer=t1, parentid="p", index_below=3,
                          ids=("a", "b", "c"))) == ["b"]

    def test_random_queries_agree_with_a_model(self, storage):
        rnd = random.Random(20131)
        at = now()
        model = {}
        for generation in range(4):
            batch = [{"id": f"r{n}", "payload": f"g{generation}", "sortindex": rnd.randint(-3, 3),
                      "parentid": rnd.choice("pq"), "predecessorid": rnd.choice("xy")}
                     for n in rnd.sample(range(40), 15)]
            stamp = put(storage, "model", *batch, at=at + 10 * generation).timestamp
            model.update({item["id"]: dict(item, modified=stamp) for item in batch})
        stamps = sorted({record["modified"] for record in model.values()})
        sort_keys = {"oldest": lambda r: r["modified"], "newest": lambda r: -r["modified"],
                     "index": lambda r: -r["sortindex"]}
        for _ in range(150):
            query = {
                "ids": (tuple(rnd.sample(sorted(model) + ["nope"], 8))
                        if rnd.random() < .2 else None),
                "parentid": rnd.choice([None, None, "p", "q"]),
                "predecessorid": rnd.choice([None, None, None, "x"]),
                "newer": rnd.choice([None, None, rnd.choice(stamps) + rnd.choice([-1, 0])]),
                "older": rnd.choice([None, None, rnd.choice(stamps) + rnd.choice([0, 1])]),
                "index_above": rnd.choice([None, None, rnd.randint(-4, 3) + rnd.choice([0, .5])]),
                "index_below": rnd.choice([None, None, rnd.randint(-3, 4) - rnd.choice([0, .5])]),
                "sort": rnd.choice([None, "oldest", "newest", "index"]),
                "limit": rnd.choice([None, None, 1, 3, 7]),
                "offset": rnd.choice([None, None, 2, 5]),
            }
            matching = [r for r in model.values() if all((
                query["ids"] is None or r["id"] in query["ids"],
                query["parentid"] in (None, r["parentid"]),
                query["predecessorid"] in (None, r["predecessorid"]),
                query["newer"] is None or r["modified"] > query["newer"],
                query["older"] is None or r["modified"] < query["older"],
                query["index_above"] is None or r["sortindex"] > query["index_above"],
                query["index_below"] is None or r["sortindex"] < query["index_below"]))]
            got = get(storage, "model", full=True, **query)
            assert all(record == model[record["id"]] for record in got), query
            assert len(set(ids_of(got))) == len(got), query
            start = query["offset"] or 0
            end = None if query["limit"] is None else start + query["limit"]
            if query["sort"]:
                key = sort_keys[query["sort"]]
                assert [key(r) for r in got] == sorted(key(r) for r in matching)[start:end], query
            elif query["limit"] is None and not query["offset"]:
                assert id_set(got) == {r["id"] for r in matching}, query
            else:
                assert len(got) == len(matching[start:end]), query
                assert id_set(got) <= {r["id"] for r in matching}, query

    # -- if_unmodified_since ------------------------------------------------

    def test_precondition_failed_when_collection_is_newer(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x"}).timestamp
        with pytest.raises(PreconditionFailed) as failure:
            put(storage, "bookmarks", {"id": "a", "payload": "changed"},
                {"id": "b", "payload": "new"}, since=stamp - 1)
        assert failure.value.timestamp == stamp
        # Nothing of the batch was written.
        assert storage.get_item(USER, "bookmarks", "a")["payload"] == "x"
        assert storage.get_item(USER, "bookmarks", "b") is None
        assert storage.get_collection_timestamp(USER, "bookmarks") == stamp

    def test_precondition_equal_timestamp_passes(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x"}).timestamp
        result = put(storage, "bookmarks", {"id": "a", "payload": "y"}, since=stamp)
        assert result.timestamp > stamp
        assert put(storage, "bookmarks", {"id": "b", "payload": "z"},
                   since=result.timestamp + 1000).timestamp > result.timestamp

    def test_precondition_never_fails_on_unwritten_collection(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "x"})
        assert put(storage, "history", {"id": "a", "payload": "x"}, since=0).modified["a"]
        assert put(storage, "brand-new", {"id": "a", "payload": "x"}, since=-5).modified["a"]
        assert storage.delete_item(USER, "nothing-here", "a", now(), if_unmodified_since=0) is None
        assert storage.delete_items(USER, "nothing-here", ItemQuery(), now(),
                                    if_unmodified_since=0) is None

    def test_precondition_is_per_collection(self, storage):
        put(storage, "history", {"id": "a", "payload": "x"})
        bookmarks = put(storage, "bookmarks", {"id": "a", "payload": "x"}).timestamp
        newer = put(storage, "history", {"id": "b", "payload": "x"}).timestamp
        assert newer > bookmarks
        put(storage, "bookmarks", {"id": "b", "payload": "x"}, since=bookmarks)

    def test_precondition_on_deletes(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x"}).timestamp
        with pytest.raises(PreconditionFailed) as failure:
            storage.delete_item(USER, "bookmarks", "a", now(), if_unmodified_since=stamp - 1)
        assert failure.value.timestamp == stamp
        with pytest.raises(PreconditionFailed):
            storage.delete_items(USER, "bookmarks", ItemQuery(), now(),
                                 if_unmodified_since=stamp - 1)
        assert ids_of(get(storage, "bookmarks")) == ["a"]
        assert storage.get_collection_timestamp(USER, "bookmarks") == stamp
        assert storage.delete_item(USER, "bookmarks", "a", now(),
                                   if_unmodified_since=stamp) > stamp

    def test_precondition_counts_expired_items(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x", "ttl": 0}).timestamp
        with pytest.raises(PreconditionFailed):
            put(storage, "bookmarks", {"id": "b", "payload": "x"}, since=stamp - 1)

    def test_metadata_only_write_checks_the_precondition(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x"}).timestamp
        with pytest.raises(PreconditionFailed):
            put(storage, "bookmarks", {"id": "a", "sortindex": 1}, since=stamp - 1)
        assert "sortindex" not in storage.get_item(USER, "bookmarks", "a")

    # -- deletes ---------------------------------------------------------------

    def test_delete_item(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x"},
                    {"id": "b", "payload": "y"}).timestamp
        deleted = storage.delete_item(USER, "bookmarks", "a", stamp)
        assert deleted == stamp + 1
        assert storage.get_item(USER, "bookmarks", "a") is None
        assert ids_of(get(storage, "bookmarks")) == ["b"]
        assert storage.get_collection_timestamp(USER, "bookmarks") == deleted
        assert storage.get_collection_timestamps(USER) == {"bookmarks": deleted}

    def test_delete_missing_item_changes_nothing(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x"}).timestamp
        assert storage.delete_item(USER, "bookmarks", "missing", stamp + 100) is None
        assert storage.delete_item(USER, "unknown-coll", "a", stamp + 100) is None
        assert storage.delete_item(USER, "history", "a", stamp + 100) is None
        assert storage.get_collection_timestamps(USER) == {"bookmarks": stamp}
        # Nothing was stamped, so the next write may use the earlier time.
        assert put(storage, "bookmarks", {"id": "b", "payload": "x"},
                   at=stamp).timestamp == stamp + 1

    def test_delete_item_removes_expired_items_too(self, storage):
        stamp = put(storage, "bookmarks", {"id": "a", "payload": "x", "ttl": 0}).timestamp
        assert storage.delete_item(USER, "bookmarks", "a", now()) > stamp
        assert storage.delete_item(USER, "bookmarks", "a", now()) is None

    def test_delete_item_without_payload_stamps_the_collection(self, storage):
        put(storage, "bookmarks", {"id": "bare", "sortindex": 1})
        stamp = storage.delete_item(USER, "bookmarks", "bare", now())
        assert stamp is not None
        assert storage.get_collection_timestamps(USER) == {"bookmarks": stamp}

    def test_delete_whole_collection_stays_listed(self, storage):
        put(storage, "bookmarks", *[{"id": str(i), "payload": "x"} for i in range(5)])
        history = put(storage, "history", {"id": "h", "payload": "x"}).timestamp
        deleted = storage.delete_items(USER, "bookmarks", ItemQuery(), now())
        assert deleted > history
        assert get(storage, "bookmarks") == []
        assert storage.get_collection_timestamps(USER) == {"bookmarks": deleted,
                                                           "history": history}
        assert storage.get_collection_counts(USER) == {"history": 1}
        # Deleting the empty collection again deletes nothing.
        assert storage.delete_items(USER, "bookmarks", ItemQuery(), now()) is None
        assert storage.get_collection_timestamp(USER, "bookmarks") == deleted

    def test_delete_items_with_filters(self, storage):
        _t1, t2, t3 = self._three_generations(storage)
        put(storage, "history", {"id": "a", "parentid": "p", "sortindex": 1},
            {"id": "b", "sortindex": 2, "predecessorid": "q"}, {"id": "c", "sortindex": 3})
        assert storage.delete_items(USER, "history", ItemQuery(ids=("a", "zz")), now())
        assert id_set(get(storage, "history")) == {"b", "c"}
        assert storage.delete_items(USER, "history", ItemQuery(parentid="nobody"), now()) is None
        assert storage.delete_items(USER, "history", ItemQuery(predecessorid="q"), now())
        assert id_set(get(storage, "history")) == {"c"}
        assert storage.delete_items(USER, "history", ItemQuery(older=t3), now()) is None
        assert storage.delete_items(USER, "history", ItemQuery(newer=t2, index_above=2.5),
                                    now())
        assert get(storage, "history") == []

    def test_delete_items_by_time_and_index(self, storage):
        _t1, t2, _t3 = self._three_generations(storage)
        assert storage.delete_items(USER, "history", ItemQuery(newer=t2), now())
        assert id_set(get(storage, "history")) == {"a", "b"}
        assert storage.delete_items(USER, "history", ItemQuery(older=t2), now())
        assert id_set(get(storage, "history")) == {"b"}
        self._sortindexes(storage)
        assert storage.delete_items(USER, "bookmarks",
                                    ItemQuery(index_above=1, index_below=4), now())
        assert id_set(get(storage, "bookmarks")) == {"1", "4"}

    def test_delete_items_with_sort_limit_and_offset(self, storage):
        self._sortindexes(storage)
        assert storage.delete_items(USER, "bookmarks", ItemQuery(sort="index", limit=2), now())
        assert id_set(get(storage, "bookmarks")) == {"1", "2"}
        self._sortindexes(storage)
        assert storage.delete_items(USER, "bookmarks",
                                    ItemQuery(sort="index", limit=1, offset=1), now())
        assert id_set(get(storage, "bookmarks")) == {"1", "2", "4"}
        assert storage.delete_items(USER, "bookmarks",
                                    ItemQuery(sort="index", limit=5, offset=10), now()) is None
        assert storage.delete_items(USER, "bookmarks", ItemQuery(sort="index", offset=2), now())
        assert id_set(get(storage, "bookmarks")) == {"2", "4"}

    def test_delete_items_includes_expired_items(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "x", "ttl": 0},
            {"id": "b", "payload": "x", "ttl": 0})
        stamp = storage.delete_items(USER, "bookmarks", ItemQuery(ids=("a",)), now())
        assert stamp is not None
        assert storage.delete_items(USER, "bookmarks", ItemQuery(), now()) > stamp
        assert storage.purge_expired(int(time.time()) + 60) == 0

    def test_delete_items_of_unknown_collection(self, storage):
        assert storage.delete_items(USER, "unknown-coll", ItemQuery(), now()) is None
        assert storage.delete_items(USER, "bookmarks", ItemQuery(), now()) is None
        assert storage.get_collection_timestamps(USER) == {}

    # -- delete_storage and delete_user ----------------------------------------

    def test_delete_storage(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "x"})
        last = put(storage, "history", {"id": "b", "payload": "x"}).timestamp
        other = put(storage, "bookmarks", {"id": "a", "payload": "mine"}, user=OTHER_USER)
        storage.delete_storage(USER, last)
        assert storage.get_collection_timestamps(USER) == {}
        assert storage.get_collection_timestamp(USER, "bookmarks") is None
        assert storage.get_collection_counts(USER) == {}
        assert storage.get_collection_usage(USER) == {}
        assert storage.get_total_usage(USER) == 0
        assert get(storage, "bookmarks") == []
        assert storage.get_item(USER, "history", "b") is None
        # Later writes are still stamped after every earlier stamp.
        again = put(storage, "bookmarks", {"id": "c", "payload": "x"}, at=last - 100)
        assert again.timestamp > last
        assert storage.get_collection_timestamps(USER) == {"bookmarks": again.timestamp}
        # Other users keep their data.
        assert storage.get_item(OTHER_USER, "bookmarks", "a")["payload"] == "mine"
        assert storage.get_collection_timestamps(OTHER_USER) == {"bookmarks": other.timestamp}

    def test_delete_storage_of_user_without_data(self, storage):
        storage.delete_storage(USER, now())
        assert storage.get_collection_timestamps(USER) == {}

    def test_delete_user(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "x"})
        put(storage, "bookmarks", {"id": "a", "payload": "theirs"}, user=OTHER_USER)
        storage.delete_user(USER)
        assert storage.get_collection_timestamps(USER) == {}
        assert storage.get_total_usage(USER) == 0
        assert get(storage, "bookmarks") == []
        assert storage.get_storage_timestamp(USER) == 0
        assert storage.get_item(OTHER_USER, "bookmarks", "a")["payload"] == "theirs"
        storage.delete_user(12345)  # unknown user: nothing to see, writes refused all the same
        assert storage.get_collection_timestamps(12345) == {}

    # -- counts and usage ------------------------------------------------------

    def test_counts_and_usage(self, storage):
        put(storage, "bookmarks", {"id": "a", "payload": "abc"}, {"id": "b", "payload": "de"},
            {"id": "dead", "payload": "xxxxxxxxxx", "ttl": 0})
        put(storage, "history", {"id": "h", "payload": "é€😀"})  # 2 + 3 + 4 UTF-8 bytes
        assert storage.get_collection_counts(USER) == {"bookmarks": 2, "history": 1}
        assert storage.get_collection_usage(USER) == {"bookmarks": 5, "history": 9}
        assert storage.get_total_usage(USER) == 14
        put(storage, "bookmarks", {"id": "a", "payload": "é"})  # rewritten: 2 bytes now
        assert storage.get_collection_usage(USER)["bookmarks"] == 4
        assert storage.get_total_usage(USER) == 13
        put(storage, "bookmarks", {"id": "b", "sortindex": 1})  # metadata only: size kept
        assert storage.get_total_usage(USER) == 13
        assert storage.get_total_usage(OTHER_USER) == 0

    def test_usage_of_largest_payload(self, storage):
        put(storage, "bookmarks", {"id": "big", "payload": MAX_PAYLOAD})
        assert storage.get_item(USER, "bookmarks", "big")["payload"] == MAX_PAYLOAD
        assert storage.get_total_usage(USER) == 256 * 1024
        assert storage.get_collection_usage(USER) == {"bookmarks": 256 * 1024}

    def test_large_non_ascii_payload(self, storage):
        payload = "€" * (80 * 1024)
        put(storage, "forms", {"id": "f", "payload": payload})
        assert storage.get_item(USER, "forms", "f")["payload"] == payload
        assert storage.get_total_usage(USER) == 3 * 80 * 1024

    # -- purge -----------------------------------------------------------------

    def test_purge_expired(self, storage):
        stamp = put(storage, "bookmarks", *[{"id": f"dead{n}", "payload": "x", "ttl": 0}
                                            for n in range(3)],
                    {"id": "alive", "payload": "x"}, {"id": "later", "payload": "x", "ttl": 3600}
                    ).timestamp
        put(storage, "history", {"id": "dead", "payload": "x", "ttl": 0}, user=OTHER_USER)
        right_now = int(time.time())
        assert storage.purge_expired(right_now - 3600) == 0
        assert storage.purge_expired(right_now, batch_size=3) == 3
        assert storage.purge_expired(right_now, batch_size=3) == 1
        assert storage.purge_expired(right_now, batch_size=3) == 0
        assert id_set(get(storage, "bookmarks")) == {"alive", "later"}
        # Purging removes rows, not collection timestamps.
        assert storage.get_collection_timestamp(USER, "bookmarks") == stamp
        assert "history" in storage.get_collection_timestamps(OTHER_USER)
        assert storage.purge_expired(right_now + 7200) == 1
        assert ids_of(get(storage, "bookmarks")) == ["alive"]

    # -- export and restore ----------------------------------------------------

    def test_export_gives_every_live_field_with_absolute_expiry(self, storage):
        at = now()
        before = int(time.time())
        put(storage, "bookmarks",
            {"id": "b", "payload": "pb", "sortindex": 5, "parentid": "p", "predecessorid": "q",
             "ttl": 3600},
            {"id": "a", "payload": "pa"}, {"id": "gone", "payload": "x", "ttl": 0}, at=at)
        exported = storage.export_records(USER, "bookmarks")
        assert [record.id for record in exported] == ["a", "b"]
        a, b = exported
        assert a == StoredRecord(id="a", modified=at, payload="pa", expires=NEVER_EXPIRES)
        assert (b.modified, b.payload, b.sortindex, b.parentid, b.predecessorid) == (
            at, "pb", 5, "p", "q")
        assert before + 3600 <= b.expires <= int(time.time()) + 3600
        assert storage.export_records(USER, "never-written") == []

    def test_restore_keeps_stamps_and_expiry_exactly(self, storage):
        old = now() - 10_000_000
        records = [StoredRecord(id="x", modified=old, payload="px", sortindex=3),
                   StoredRecord(id="y", modified=old + 5, payload="py",
                                expires=int(time.time()) + 600)]
        stamp = storage.restore_records(USER, "history", records, old + 7)
        assert stamp == old + 7
        assert storage.get_collection_timestamp(USER, "history") == old + 7
        assert storage.export_records(USER, "history") == records
        assert storage.get_item(USER, "history", "x") == {
            "id": "x", "modified": old, "payload": "px", "sortindex": 3}
        assert ids_of(get(storage, "history", newer=old)) == ["y"]
        assert storage.get_collection_counts(USER) == {"history": 2}
        assert storage.get_total_usage(USER) == 4

    def test_restore_twice_changes_nothing(self, storage):
        old = now() - 10_000_000
        records = [StoredRecord(id="x", modified=old, payload="px")]
        storage.restore_records(USER, "forms", records, old)
        before = (storage.get_collection_timestamps(USER), storage.export_records(USER, "forms"))
        storage.restore_records(USER, "forms", records, old)
        assert (storage.get_collection_timestamps(USER),
                storage.export_records(USER, "forms")) == before

    def test_restore_never_moves_a_timestamp_backwards(self, storage):
        at = now()
        put(storage, "bookmarks", {"id": "a", "payload": "new"}, at=at)
        storage.restore_records(USER, "bookmarks",
                                [StoredRecord(id="b", modified=at - 500, payload="old")], at - 500)
        assert storage.get_collection_timestamp(USER, "bookmarks") == at
        assert id_set(get(storage, "bookmarks")) == {"a", "b"}

    def test_writes_after_a_restore_are_stamped_after_it(self, storage):
        future = now() + 100_000
        storage.restore_records(USER, "prefs", [StoredRecord(id="p", modified=future,
                                                             payload="x")], future)
        result = put(storage, "tabs", {"id": "t", "payload": "y"})
        assert result.timestamp > future

    def test_restore_of_an_emptied_collection_keeps_its_timestamp(self, storage):
        old = now() - 10_000_000
        assert storage.restore_records(USER, "addons", [], old) == old
        assert storage.get_collection_timestamps(USER) == {"addons": old}
        assert get(storage, "addons") == []

    # -- ids, payloads, collections, users --------------------------------------

    def test_ids_are_case_sensitive(self, storage):
        put(storage, "bookmarks", {"id": "abc", "payload": "lower"},
            {"id": "ABC", "payload": "upper"})
        assert storage.get_item(USER, "bookmarks", "abc")["payload"] == "lower"
        assert storage.get_item(USER, "bookmarks", "ABC")["payload"] == "upper"
        assert storage.get_item(USER, "bookmarks", "Abc") is None
        assert ids_of(get(storage, "bookmarks", ids=("abc",))) == ["abc"]
        assert ids_of(get(storage, "bookmarks", ids=("ABC", "aBc"))) == ["ABC"]
        storage.delete_item(USER, "bookmarks", "ABC", now())
        assert ids_of(get(storage, "bookmarks")) == ["abc"]
        put(storage, "bookmarks", {"id": "x", "payload": "x", "parentid": "P"})
        assert get(storage, "bookmarks", parentid="p") == []

    def test_unusual_ids_round_trip(self, storage):
        unusual = ["{9e4c8f3a-1b2c-4d5e-8f90-123456789abc}", "#", "?", "~", "a b", "%20", "a'b",
                   'a"b', "back\\slash", "semi;colon", "-_.!*()", "x" * 64, "0", "*", "%", "_",
                   "a,b", "dot.", " lead", "trail ", "trail", "trail  "]
        put(storage, "bookmarks", *[{"id": item_id, "payload": item_id, "parentid": item_id}
                                    for item_id in unusual], {"id": "other", "payload": "q"})
        assert id_set(get(storage, "bookmarks")) == set(unusual) | {"other"}
        for item_id in unusual:
            record = storage.get_item(USER, "bookmarks", item_id)
            assert (record["payload"], record["parentid"]) == (item_id, item_id)
            assert ids_of(get(storage, "bookmarks", ids=(item_id,))) == [item_id]
            assert ids_of(get(storage, "bookmarks", parentid=item_id)) == [item_id]
        # LIKE wildcards are not wildcards here.
        assert storage.delete_items(USER, "bookmarks", ItemQuery(ids=("%", "_")), now())
        assert storage.get_item(USER, "bookmarks", "%20") is not None
        for item_id in unusual[:5]:
            assert storage.delete_item(USER, "bookmarks", item_id, now()) is not None
        assert len(get(storage, "bookmarks")) == len(unusual) - 6
        assert storage.get_item(USER, "bookmarks", "trail ")["payload"] == "trail "
        assert ids_of(get(storage, "bookmarks", ids=("trail",))) == ["trail"]
        assert ids_of(get(storage, "bookmarks", parentid="trail  ")) == ["trail  "]

    def test_non_ascii_payload_round_trip(self, storage):
        payload = '{"ciphertext": "héllo wörld ✓ 日本語 😀", "IV": "\\u00e9"}'
        put(storage, "bookmarks", {"id": "a", "payload": payload})
        assert storage.get_item(USER, "bookmarks", "a")["payload"] == payload
        assert get(storage, "bookmarks", full=True)[0]["payload"] == payload

    def test_custom_collection_names(self, storage):
        names = ["my-coll", "My.Coll_2", "x" * 32, "addons", "0"]
        stamps = {name: put(storage, name, {"id": "a", "payload": name}).timestamp
                  for name in names}
        assert storage.get_collection_timestamps(USER) == stamps
        for name in names:
            assert storage.get_item(USER, name, "a")["payload"] == name
            assert storage.get_collection_timestamp(USER, name) == stamps[name]
        assert storage.get_collection_counts(USER) == dict.fromkeys(names, 1)

    def test_collection_names_are_case_sensitive(self, storage):
        put(storage, "mycoll", {"id": "a", "payload": "lower"})
        put(storage, "MyColl", {"id": "a", "payload": "mixed"})
        assert storage.get_item(USER, "mycoll", "a")["payload"] == "lower"
        assert storage.get_item(USER, "MyColl", "a")["payload"] == "mixed"
        assert set(storage.get_collection_timestamps(USER)) == {"mycoll", "MyColl"}

    def test_users_are_isolated(self, storage):
        at = now()
        mine = put(storage, "bookmarks", {"id": "a", "payload": "mine", "sortindex": 1}, at=at)
        put(storage, "bookmarks", {"id": "b", "payload": "mine too"}, at=at)
        theirs = put(storage, "bookmarks", {"id": "a", "payload": "theirs"}, user=OTHER_USER,
                     at=at)
        # Stamps are per user: the other user's first write is not pushed later.
        assert theirs.timestamp == at == mine.timestamp
        assert storage.get_item(USER, "bookmarks", "a")["payload"] == "mine"
        assert storage.get_item(OTHER_USER, "bookmarks", "a")["payload"] == "theirs"
        assert ids_of(get(storage, "bookmarks", user=OTHER_USER)) == ["a"]
        assert storage.get_collection_counts(OTHER_USER) == {"bookmarks": 1}
        storage.delete_items(OTHER_USER, "bookmarks", ItemQuery(), now())
        assert id_set(get(storage, "bookmarks")) == {"a", "b"}
        with pytest.raises(PreconditionFailed):
            put(storage, "bookmarks", {"id": "c", "payload": "x"}, since=at - 1)
        put(storage, "bookmarks", {"id": "c", "payload": "x"}, user=BIG_USER, since=at - 1)
        assert ids_of(get(storage, "bookmarks", user=BIG_USER)) == ["c"]

    def test_batch_of_a_hundred_shares_one_stamp(self, storage):
        items = [{"id": f"item{n:03d}", "payload": f"payload {n}", "sortindex": n}
                 for n in range(100)]
        result = put(storage, "bookmarks", *items)
        assert result.modified == {f"item{n:03d}": result.timestamp for n in range(100)}
        records = get(storage, "bookmarks", full=True, sort="index")
        assert ids_of(records) == [f"item{n:03d}" for n in reversed(range(100))]
        assert {record["modified"] for record in records} == {result.timestamp}
        assert storage.get_collection_counts(USER) == {"bookmarks": 100}
        # Rewriting all of them at once, some with new metadata only.
        again = put(storage, "bookmarks", *[
            {"id": f"item{n:03d}", "payload": "new"} if n % 2 else
            {"id": f"item{n:03d}", "sortindex": -n} for n in range(100)])
        assert again.timestamp > result.timestamp
        assert set(again.modified.values()) == {result.timestamp, again.timestamp}
        assert len(get(storage, "bookmarks", newer=result.timestamp)) == 50

    def test_empty_batch(self, storage):
        at = now()
        assert put(storage, "bookmarks", at=at) == WriteResult(at, {})
        assert storage.get_collection_timestamps(USER) == {}

    # -- concurrency -----------------------------------------------------------

    def test_racing_writers_with_the_same_precondition(self, storage):
        writers = 4
        for round_number in range(3):
            base = put(storage, "race", {"id": "seed", "payload": str(round_number)}).timestamp
            won, lost = [], []

            def write(index, base=base, won=won, lost=lost, round_number=round_number):
                try:
                    put(storage, "race", {"id": f"w{round_number}-{index}", "payload": "x"},
                        since=base)
                    won.append(index)
                except PreconditionFailed as failure:
                    lost.append(failure.timestamp)

            assert run_threads(writers, write) == []
            assert len(won) == 1, (won, lost)
            assert len(lost) == writers - 1
            winner_stamp = storage.get_collection_timestamp(USER, "race")
            assert all(stamp == winner_stamp for stamp in lost)
            written = [i for i in range(writers)
                       if storage.get_item(USER, "race", f"w{round_number}-{i}")]
            assert written == won

    def test_concurrent_writers_on_different_users(self, storage):
        writers, writes = 4, 5

        def write(index):
            user = 100 + index
            for n in range(writes):
                put(storage, f"coll{n % 2}", {"id": f"i{n}", "payload": f"{index}-{n}"},
                    user=user)
                get(storage, f"coll{n % 2}", user=user)

        assert run_threads(writers, write) == []
        for index in range(writers):
            user = 100 + index
            for n in range(writes):
                record = storage.get_item(user, f"coll{n % 2}", f"i{n}")
                assert record["payload"] == f"{index}-{n}"
            assert storage.get_collection_counts(user) == {"coll0": 3, "coll1": 2}

    def test_concurrent_writers_on_one_collection_get_distinct_stamps(self, storage):
        at = now()
        stamps = []

        def write(index):
            for n in range(3):
                stamps.append(put(storage, "shared", {"id": f"{index}-{n}", "payload": "x"},
                                  at=at).timestamp)

        assert run_threads(4, write) == []
        assert sorted(stamps) == list(range(at, at + 12))
        assert storage.get_collection_timestamp(USER, "shared") == at + 11
        assert storage.get_collection_counts(USER) == {"shared": 12}

    def test_mixed_concurrent_operations_raise_no_errors(self, storage):
        """Writes, deletes, purges and an account deletion racing on shared users."""
        def work(index):
            rnd = random.Random(index)
            for _ in range(40):
                user, collection = rnd.randint(1, 3), rnd.choice(["bookmarks", "custom-a"])
                choice = rnd.random()
                # Losing a race to another thread, or writing to the user deleted
                # meanwhile, are expected outcomes here.
                with contextlib.suppress(PreconditionFailed, UserDeleted):
                    if choice < 0.5:
                        put(storage, collection, *[
                            {"id": f"i{rnd.randint(0, 9)}", "payload": "x",
                             "ttl": rnd.choice([None, 0, 60])} for _ in range(rnd.randint(1, 5))],
                            user=user, since=storage.get_collection_timestamp(user, collection))
                    elif choice < 0.65:
                        storage.delete_item(user, collection, f"i{rnd.randint(0, 9)}", now())
                    elif choice < 0.75:
                        storage.delete_items(user, collection, ItemQuery(sort="newest", limit=2),
                                             now())
                    elif choice < 0.8:
                        storage.delete_storage(user, now())
                    elif choice < 0.85:
                        if user == 3:
                            storage.delete_user(user)
                    elif choice < 0.9:
                        storage.purge_expired(int(time.time()) + 1, batch_size=5)
                    else:
                        get(storage, collection, user=user, full=True, sort="index", limit=3)
                        storage.get_collection_timestamps(user)

        assert run_threads(8, work) == []
        for user in (1, 2):
            stamps = storage.get_collection_timestamps(user)
            at = max(stamps.values(), default=0)
            assert put(storage, "bookmarks", {"id": "last", "payload": "x"}, user=user,
                       at=at).timestamp > at
