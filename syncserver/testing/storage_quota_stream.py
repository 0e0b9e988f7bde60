"""Conformance tests of the quota inside writes and of streamed reads.

Part of :class:`syncserver.testing.storage_conformance.StorageConformanceTests`
(which inherits these classes): a plugin author runs them by running that
suite. Kept apart because each is one idea of the interface: the quota rule
of ``set_items`` / ``check_quota`` and the usage total behind it, and the
count-then-chunks contract of ``stream_items``.
"""

import time

import pytest

from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import (
    ItemQuery,
    ItemWrite,
    PreconditionFailed,
    QuotaExceeded,
    RecordStream,
    StoredRecord,
)

USER = 1
KB = 1024


def _write(storage, collection, *items, quota_kb=None, since=None, user=USER):
    return storage.set_items(user, collection, list(items), now_centiseconds(),
                             if_unmodified_since=since, quota_kb=quota_kb)


def _payload(size):
    return "q" * size


class QuotaConformanceTests:
    """``set_items(quota_kb=...)``, ``check_quota`` and the usage they count."""

    def test_no_quota_asked_means_no_check(self, storage):
        _write(storage, "bookmarks", ItemWrite("a", payload=_payload(3 * KB)))
        result = _write(storage, "bookmarks", ItemWrite("b", payload="x"))
        assert result.quota_left_kb is None
        assert storage.check_quota(USER, None) is None
        assert _write(storage, "bookmarks", ItemWrite("c", payload="x"),
                      quota_kb=0).quota_left_kb is None  # 0: unlimited

    def test_the_write_that_crosses_the_quota_passes_the_next_is_refused(self, storage):
        first = _write(storage, "bookmarks", ItemWrite("a", payload=_payload(KB)), quota_kb=2)
        assert first.quota_left_kb == 2.0  # what was left before the write
        second = _write(storage, "bookmarks", ItemWrite("b", payload=_payload(1536)), quota_kb=2)
        assert second.quota_left_kb == 1.0
        with pytest.raises(QuotaExceeded) as refused:
            _write(storage, "bookmarks", ItemWrite("c", payload="z"), quota_kb=2)
        assert refused.value.quota_kb == 2 and refused.value.used_bytes == 2560
        assert storage.get_item(USER, "bookmarks", "c") is None
        with pytest.raises(QuotaExceeded):
            storage.check_quota(USER, 2)
        # A larger default lets the user write again.
        assert _write(storage, "bookmarks", ItemWrite("c", payload="z"),
                      quota_kb=3).quota_left_kb == 3 - 2560 / KB

    def test_quota_is_checked_before_the_precondition(self, storage):
        stamp = _write(storage, "bookmarks", ItemWrite("a", payload=_payload(2 * KB))).timestamp
        _write(storage, "bookmarks", ItemWrite("b", payload="x"))
        with pytest.raises(QuotaExceeded):
            _write(storage, "bookmarks", ItemWrite("c", payload="x"), quota_kb=1, since=stamp)
        with pytest.raises(PreconditionFailed):
            _write(storage, "bookmarks", ItemWrite("c", payload="x"), quota_kb=10, since=stamp)

    def test_rewrites_replace_bytes_and_deletes_free_them(self, storage):
        _write(storage, "bookmarks", ItemWrite("a", payload=_payload(KB)),
               ItemWrite("b", payload=_payload(KB)))
        _write(storage, "bookmarks", ItemWrite("a", payload=_payload(KB)))  # same size again
        _write(storage, "history", ItemWrite("h", payload=_payload(KB)))
        assert storage.check_quota(USER, 4) == 1.0
        _write(storage, "bookmarks", ItemWrite("b", payload="small"))
        assert storage.check_quota(USER, 4) == 4 - (2 * KB + 5) / KB
        storage.delete_item(USER, "bookmarks", "a", now_centiseconds())
        assert storage.check_quota(USER, 4) == 4 - (KB + 5) / KB
        storage.delete_items(USER, "history", ItemQuery(), now_centiseconds())
        assert storage.check_quota(USER, 4) == 4 - 5 / KB
        storage.delete_items(USER, "bookmarks", ItemQuery(ids=("b",)), now_centiseconds())
        assert storage.check_quota(USER, 4) == 4.0
        _write(storage, "tabs", ItemWrite("t", payload=_payload(KB)))
        storage.delete_storage(USER, now_centiseconds())
        assert storage.check_quota(USER, 4) == 4.0
        assert _write(storage, "tabs", ItemWrite("t", payload="x"), quota_kb=1).quota_left_kb == 1.0

    def test_expired_items_count_until_purged(self, storage):
        _write(storage, "history", ItemWrite("old", payload=_payload(2 * KB), ttl=0))
        # Invisible at once, and not in the live usage ...
        assert storage.get_total_usage(USER) == 0
        # ... but still counted against the quota until the purge removes it.
        with pytest.raises(QuotaExceeded):
            _write(storage, "history", ItemWrite("new", payload="x"), quota_kb=2)
        assert storage.purge_expired(int(time.time()) + 1) == 1
        assert storage.check_quota(USER, 2) == 2.0
        assert _write(storage, "history", ItemWrite("new", payload="x"), quota_kb=2)

    def test_an_expired_item_rewritten_frees_its_bytes(self, storage):
        _write(storage, "history", ItemWrite("a", payload=_payload(2 * KB), ttl=0))
        _write(storage, "history", ItemWrite("a", payload="x"))
        assert storage.check_quota(USER, 2) == 2 - 1 / KB

    def test_restore_counts_what_it_stores(self, storage):
        old = now_centiseconds() - 10_000
        storage.restore_records(USER, "forms", [StoredRecord(id="f", modified=old,
                                                             payload=_payload(KB))], old)
        storage.restore_records(USER, "forms", [StoredRecord(id="f", modified=old,
                                                             payload=_payload(KB))], old)
        assert storage.check_quota(USER, 3) == 2.0

    def test_own_quota_wins_over_the_default(self, storage):
        try:
            storage.set_user_quota(USER, 1)
        except NotImplementedError:
            pytest.skip("this backend has no per-user quotas")
        _write(storage, "bookmarks", ItemWrite("a", payload=_payload(KB)), quota_kb=100)
        with pytest.raises(QuotaExceeded):
            _write(storage, "bookmarks", ItemWrite("b", payload="x"), quota_kb=100)
        storage.set_user_quota(USER, 0)  # no quota for this user, whatever the default
        assert _write(storage, "bookmarks", ItemWrite("b", payload="x"),
                      quota_kb=1).quota_left_kb is None
        storage.set_user_quota(USER, None)
        with pytest.raises(QuotaExceeded):
            _write(storage, "bookmarks", ItemWrite("c", payload="x"), quota_kb=1)


#: Enough records to be streamed by a backend that reads small answers at once.
MANY = 2500


class StreamConformanceTests:
    """``stream_items``: the count first, then exactly those records, in chunks."""

    @staticmethod
    def _fill(storage, count=MANY, collection="history"):
        for start in range(0, count, 500):
            _write(storage, collection, *[
                ItemWrite(f"r{n:05d}", payload=f"payload {n}", sortindex=n % 97)
                for n in range(start, min(start + 500, count))])

    @staticmethod
    def _drain(stream):
        records = []
        for chunk in stream:
            assert isinstance(chunk, list) and chunk
            records.extend(chunk)
        return records

    def test_stream_gives_what_get_items_gives(self, storage):
        self._fill(storage)
        _write(storage, "history", ItemWrite("gone", payload="x", ttl=0))
        queries = [ItemQuery(), ItemQuery(sort="index"), ItemQuery(sort="newest", offset=7),
                   ItemQuery(sort="oldest", limit=2000, offset=100), ItemQuery(limit=5),
                   ItemQuery(index_above=50), ItemQuery(ids=("r00001", "r02000", "nope")),
                   ItemQuery(offset=MANY + 10)]
        for query in queries:
            for full in (False, True):
                expected = storage.get_items(USER, "history", query, full)
                stream = storage.stream_items(USER, "history", query, full)
                assert isinstance(stream, RecordStream)
                got = self._drain(stream)
                assert stream.count == len(got), query
                if query.sort is None:
                    key = lambda record: record["id"]  # noqa: E731
                    assert sorted(got, key=key) == sorted(expected, key=key), query
                else:
                    assert got == expected, query

    def test_stream_of_an_unknown_collection_is_empty(self, storage):
        stream = storage.stream_items(USER, "never-written", ItemQuery(), True)
        assert stream.count == 0 and self._drain(stream) == []

    def test_count_and_records_agree_whatever_is_written_meanwhile(self, storage):
        self._fill(storage)
        stream = storage.stream_items(USER, "history", ItemQuery(sort="index"), True)
        count = stream.count
        assert count == MANY
        # Written, rewritten and deleted after the count, before the records are read.
        _write(storage, "history", *[ItemWrite(f"late{n}", payload="late") for n in range(50)])
        _write(storage, "history", ItemWrite("r00003", payload="rewritten"))
        storage.delete_items(USER, "history", ItemQuery(ids=("r00010", "r00011")),
                             now_centiseconds())
        records = self._drain(stream)
        assert len(records) == count
        assert len({record["id"] for record in records}) == count

    def test_streams_closed_early_release_what_they_hold(self, storage):
        self._fill(storage)
        for _ in range(25):  # more than a connection pool holds
            stream = storage.stream_items(USER, "history", ItemQuery(), True)
            next(iter(stream))
            stream.close()
            stream.close()
        never_read = storage.stream_items(USER, "history", ItemQuery(), False)
        never_read.close()
        _write(storage, "history", ItemWrite("after", payload="x"))
        assert storage.get_item(USER, "history", "after")["payload"] == "x"
