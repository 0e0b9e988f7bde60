"""RedisCachedStorage over SQLite and MariaDB with a real Redis: conformance, consistency, faults.

Two instances built separately (own engine, own Redis client) on one
database and one Redis stand for two server processes; one test uses a real
second process. Fault tests stop, freeze or restart the session's private
redis-server and always leave it running.
"""

import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time

import pytest
import redis

from syncserver.errors import ConfigError
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.settings import StorageSettings, parse_settings
from syncserver.storage import (
    SYNC15_WRITES,
    ItemQuery,
    ItemWrite,
    PreconditionFailed,
    StorageBackend,
    UserDeleted,
)
from syncserver.storage.redis import RedisCachedStorage, RedisCacheSettings
from syncserver.storage.sql import SQLStorage
from syncserver.testing.storage_conformance import StorageConformanceTests
from tests.backends import open_from_settings

USER = 1
LOGGER = "syncserver.storage.redis"


class CountingSQLStorage(SQLStorage):
    """SQLStorage that counts the reads reaching it, to show what the cache answers."""

    READS = ("get_collection_timestamps", "get_collection_counts", "get_collection_usage",
             "get_total_usage", "get_items", "get_item", "get_storage_timestamp")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = collections.Counter()

    def __getattribute__(self, name):
        if name in CountingSQLStorage.READS:
            self_calls = object.__getattribute__(self, "calls")
            self_calls[name] += 1
        return object.__getattribute__(self, name)


def build(sqluri, redis_url, wrapped=SQLStorage, **overrides):
    cache = RedisCacheSettings(redis_url=redis_url, **overrides)
    settings = StorageSettings(backend=RedisCachedStorage, wrapped_backend=wrapped,
                               sqluri=sqluri, create_tables=True, backend_settings=cache)
    return open_from_settings(StorageBackend, settings)


@pytest.fixture
def make_cached():
    built = []

    def make(sqluri, redis_url, **options):
        storage = build(sqluri, redis_url, **options)
        built.append(storage)
        return storage

    yield make
    for storage in built:
        storage.close()


@pytest.fixture(params=["sqlite", "mysql"])
def sync_db(request):
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def pair(sync_db, redis_url, make_cached):
    """Two "processes" (A, B) and a plain SQLStorage (truth) on one database and one Redis."""
    first = make_cached(sync_db, redis_url, wrapped=CountingSQLStorage, redis_retry_seconds=1)
    second = make_cached(sync_db, redis_url, wrapped=CountingSQLStorage, redis_retry_seconds=1)
    truth = SQLStorage.from_settings(StorageSettings(backend=SQLStorage, sqluri=sync_db))
    yield first, second, truth
    truth.close()


@contextlib.contextmanager
def redis_restored(redis_server):
    """Always leave the session's redis-server running and not frozen."""
    try:
        yield
    finally:
        if redis_server.running:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        else:
            redis_server.start()


def write(storage, collection, item_id, payload, user=USER, since=None, ttl=None):
    return storage.set_items(user, collection, [ItemWrite(item_id, payload=payload, ttl=ttl)],
                             now_centiseconds(), if_unmodified_since=since)


def everything(storage, user=USER):
    """Every answer the cache keeps, as a reader sees it."""
    return {
        "storage_stamp": storage.get_storage_timestamp(user),
        "stamps": storage.get_collection_timestamps(user),
        "stamp": storage.get_collection_timestamp(user, "tabs"),
        "counts": storage.get_collection_counts(user),
        "usage": storage.get_collection_usage(user),
        "total": storage.get_total_usage(user),
        "meta": storage.get_item(user, "meta", "global"),
        "tabs": sorted_records(storage.get_items(user, "tabs", ItemQuery(), True)),
    }


def sorted_records(records):
    return sorted(records, key=lambda record: record["id"])


def seed(storage):
    write(storage, "meta", "global", '{"syncID": "one"}')
    write(storage, "tabs", "desktop", '{"tabs": 1}')
    write(storage, "bookmarks", "b1", "bookmark")


# -- the conformance suite ----------------------------------------------------------

class TestRedisStorageConformance(StorageConformanceTests):
    @pytest.fixture
    def storage(self, sync_db, redis_url, make_cached):
        return make_cached(sync_db, redis_url)


# -- the cache is used ---------------------------------------------------------------

def test_repeated_reads_come_from_redis(pair, redis_url):
    first, _, _ = pair
    seed(first)
    before = everything(first)
    calls = first.wrapped.calls.copy()
    for _ in range(3):
        assert everything(first) == before
    assert first.wrapped.calls == calls
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = client.keys("syncserver:u:*")
        assert len(keys) == 1 and keys[0].endswith(f":{USER}")
        assert {"gen", "storage_stamp", "stamps", "counts", "usage", "total", "meta", "tabs"} <= set(
            client.hkeys(keys[0]))
    finally:
        client.close()


def test_other_reads_and_filtered_tabs_go_to_the_database(pair):
    first, _, _ = pair
    seed(first)
    write(first, "tabs", "phone", "p")
    everything(first)
    calls = first.wrapped.calls.copy()
    assert first.get_item(USER, "bookmarks", "b1")["payload"] == "bookmark"
    assert [r["id"] for r in first.get_items(USER, "tabs", ItemQuery(sort="newest"), False)] == [
        "phone", "desktop"]
    assert len(first.get_items(USER, "tabs", ItemQuery(limit=1), False)) == 1
    assert first.wrapped.calls - calls == collections.Counter(get_item=1, get_items=2)


def test_cached_tabs_answer_filters_exactly(pair):
    first, second, truth = pair
    stamps = [write(first, "tabs", f"t{i}", f"payload {i}").timestamp for i in range(4)]
    first.set_items(USER, "tabs", [ItemWrite("meta-only", sortindex=3)], now_centiseconds())
    queries = [ItemQuery(), ItemQuery(newer=stamps[1]), ItemQuery(older=stamps[2]),
               ItemQuery(ids=("t0", "t3", "nope", "meta-only")),
               ItemQuery(newer=stamps[0], older=stamps[3], ids=("t1", "t2", "t3"))]
    second.get_items(USER, "tabs", ItemQuery(), True)  # fills the cache
    calls = second.wrapped.calls.copy()
    for query in queries:
        for full in (True, False):
            assert sorted_records(second.get_items(USER, "tabs", query, full)) == sorted_records(
                truth.get_items(USER, "tabs", query, full))
    assert second.wrapped.calls == calls


def test_cached_answers_end_when_an_item_expires(pair):
    first, second, truth = pair
    write(first, "tabs", "short", "x" * 10, ttl=2)
    write(first, "tabs", "long", "y" * 10)
    write(first, "meta", "global", "m", ttl=2)
    assert everything(second) == everything(truth)  # cached, unless already expired
    deadline = time.time() + 4
    while truth.get_collection_counts(USER) != {"tabs": 1} and time.time() < deadline:
        time.sleep(0.2)
    assert everything(second) == everything(truth)
    assert everything(second)["counts"] == {"tabs": 1}


# -- consistency across instances ("processes") -----------------------------------------

def test_write_through_one_is_seen_by_the_other_at_once(pair):
    first, second, truth = pair
    seed(first)
    assert everything(second) == everything(truth)  # B's cache is now full
    steps = [
        lambda: write(first, "meta", "global", '{"syncID": "two"}'),
        lambda: write(first, "tabs", "phone", "tabs of the phone " * 10),
        lambda: first.delete_item(USER, "tabs", "desktop", now_centiseconds()),
        lambda: first.delete_items(USER, "bookmarks", ItemQuery(), now_centiseconds()),
        lambda: first.set_items(USER, "tabs", [ItemWrite("phone", sortindex=5)],
                                now_centiseconds()),
        lambda: first.delete_storage(USER, now_centiseconds()),
        lambda: seed(first),
        lambda: first.delete_user(USER),
    ]
    for step in steps:
        step()
        expected = everything(truth)
        assert everything(second) == expected
        assert everything(first) == expected


def test_precondition_sees_the_other_instances_write(pair):
    first, second, _ = pair
    old = write(first, "tabs", "desktop", "one").timestamp
    assert second.get_collection_timestamp(USER, "tabs") == old
    new = write(first, "tabs", "desktop", "two", since=old).timestamp
    assert second.get_collection_timestamp(USER, "tabs") == new
    with pytest.raises(PreconditionFailed):
        write(second, "tabs", "desktop", "three", since=old)
    assert second.get_item(USER, "tabs", "desktop")["payload"] == "two"


def test_stamps_never_go_backwards_across_instances(pair):
    first, second, _ = pair
    seen = []
    for index in range(12):
        writer, reader = (first, second) if index % 2 else (second, first)
        write(writer, "tabs", "t", str(index))
        for storage in (reader, writer):
            seen.append(storage.get_collection_timestamps(USER)["tabs"])
    assert seen == sorted(seen) and len(set(seen)) == 12


def test_racing_conditional_writers_on_two_instances_have_one_winner(pair):
    first, second, truth = pair
    base = write(first, "bookmarks", "x", "base").timestamp
    assert second.get_collection_timestamp(USER, "bookmarks") == base
    barrier = threading.Barrier(8)
    winners, losers, errors = [], [], []

    def race(index):
        storage = (first, second)[index % 2]
        try:
            barrier.wait(timeout=30)
            winners.append(write(storage, "bookmarks", "x", f"writer {index}", since=base))
        except PreconditionFailed:
            losers.append(index)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(winners) == 1 and len(losers) == 7
    stamp = winners[0].timestamp
    for storage in (first, second, truth):
        assert storage.get_collection_timestamp(USER, "bookmarks") == stamp


def test_concurrent_readers_never_cache_a_stale_answer(pair):
    """Readers on B keep refilling the cache while A writes: after each write, B is current."""
    first, second, truth = pair
    stop = threading.Event()

    def read_forever():
        while not stop.is_set():
            everything(second)

    readers = [threading.Thread(target=read_forever) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for index in range(15):
            write(first, "tabs", "t", f"version {index}")
            write(first, "meta", "global", f"meta {index}")
            assert everything(second) == everything(truth)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)


def _child_writes(sqluri, redis_url, payload):
    """Runs in a separate process: writes through its own cached backend."""
    storage = build(sqluri, redis_url)
    try:
        write(storage, "meta", "global", payload)
        write(storage, "tabs", "child", payload)
    finally:
        storage.close()


def test_read_after_write_in_a_separate_process(mysql_url, redis_url, make_cached):
    parent = make_cached(mysql_url, redis_url)
    write(parent, "meta", "global", "parent")
    before = everything(parent)
    assert before["meta"]["payload"] == "parent"
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_child_writes, args=(mysql_url, redis_url, "child"))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    after = everything(parent)
    assert after["meta"]["payload"] == "child"
    assert [r["id"] for r in after["tabs"]] == ["child"]
    assert after["stamps"]["tabs"] > before["stamps"]["meta"]


# -- Sync 1.5: batches, collection and storage deletions -------------------------------------

LIMITS = {"max_total_records": 100, "max_total_bytes": 10_000}


def test_staging_a_batch_reads_and_drops_nothing_cached(pair):
    first, second, truth = pair
    seed(first)
    cached = everything(second)
    calls = second.wrapped.calls.copy()
    batch_id = first.create_batch(USER, "tabs", now_centiseconds(), 7200)
    first.append_to_batch(USER, "tabs", batch_id, [ItemWrite("staged", payload="s")],
                          now_centiseconds(), **LIMITS)
    assert everything(second) == cached == everything(truth)
    assert second.wrapped.calls == calls  # still answered from Redis


def test_a_commit_is_seen_by_the_other_instance_at_once(pair):
    first, second, truth = pair
    seed(first)
    everything(second)
    batch_id = first.create_batch(USER, "tabs", now_centiseconds(), 7200)
    first.append_to_batch(USER, "tabs", batch_id, [ItemWrite("staged", payload="s")],
                          now_centiseconds(), **LIMITS)
    result = first.commit_batch(USER, "tabs", batch_id, [ItemWrite("last", payload="l")],
                                now_centiseconds(), **LIMITS)
    seen = everything(second)
    assert seen == everything(truth)
    assert seen["storage_stamp"] == seen["stamps"]["tabs"] == result.timestamp
    assert {record["id"] for record in seen["tabs"]} == {"desktop", "staged", "last"}


def test_deletions_of_1_5_move_the_cached_storage_timestamp(pair):
    first, second, truth = pair
    seed(first)
    steps = [
        lambda: first.set_items(USER, "tabs", [ItemWrite("desktop", ttl=60)],
                                now_centiseconds(), rules=SYNC15_WRITES),
        lambda: first.set_items(USER, "meta", [ItemWrite("global", payload="m2")],
                                now_centiseconds(), if_unmodified_since=0,
                                rules=SYNC15_WRITES, precondition="item"),
        lambda: first.delete_item(USER, "meta", "global", now_centiseconds(),
                                  precondition="item"),
        lambda: first.delete_collection(USER, "tabs", now_centiseconds()),
        lambda: first.delete_storage(USER, now_centiseconds()),
        lambda: seed(first),
        lambda: first.delete_user(USER),
    ]
    for step in steps:
        everything(second)
        with contextlib.suppress(PreconditionFailed):
            step()
        expected = everything(truth)
        assert everything(second) == expected
    with pytest.raises(UserDeleted):
        write(second, "tabs", "t", "after the deletion")
    assert everything(second) == everything(truth)


# -- Redis faults --------------------------------------------------------------------

def test_redis_down_serves_from_the_database_and_warns_once(
        sqlite_url, redis_url, redis_server, make_cached, caplog):
    storage = make_cached(sqlite_url, redis_url, redis_retry_seconds=60)
    seed(storage)
    everything(storage)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with redis_restored(redis_server):
        redis_server.stop()
        write(storage, "tabs", "while-down", "x")
        for _ in range(3):
            answers = everything(storage)
        assert [r["id"] for r in answers["tabs"]] == ["desktop", "while-down"]
        assert storage.is_healthy()
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "answering from the database" in warnings[0].getMessage()


def test_restart_empty_after_writes_while_down(pair, redis_server):
    first, second, truth = pair
    seed(first)
    everything(second)
    with redis_restored(redis_server):
        redis_server.stop()
        write(first, "meta", "global", "written while Redis was down")
        first.delete_item(USER, "tabs", "desktop", now_centiseconds())
        assert everything(second) == everything(truth)
        redis_server.start()
        assert everything(second) == everything(truth)
        time.sleep(1.1)  # first's retry pause
        write(first, "tabs", "back", "b")
        assert everything(second) == everything(truth)
        assert everything(first) == everything(truth)


def _snapshot(client):
    return {key: (client.dump(key), client.pttl(key)) for key in client.keys("*")}


def test_restart_that_reloads_old_keys_serves_nothing_stale(pair, redis_server, redis_url):
    """Redis restarts with its old data (as from an RDB/AOF file) after writes it missed."""
    first, second, truth = pair
    seed(first)
    stale = everything(second)
    admin = redis.Redis.from_url(redis_url)
    try:
        saved = _snapshot(admin)
        with redis_restored(redis_server):
            redis_server.stop()
            write(first, "meta", "global", "written while Redis was down")
            write(first, "tabs", "phone", "p")
            redis_server.start()
            for key, (value, ttl) in saved.items():
                admin.restore(key, max(ttl, 0), value, replace=True)
            expected = everything(truth)
            assert expected != stale
            # B never failed: only the restart tells it that its cache is gone.
            assert everything(second) == expected
            assert everything(second) == expected
            assert admin.get("syncserver:ns") != saved.get(b"syncserver:ns", (None,))[0]
    finally:
        admin.close()


def test_frozen_redis_then_the_writer_drops_what_it_missed(pair, redis_server):
    """Redis stalls (SIGSTOP) while A writes; once it answers, A invalidates before B is trusted."""
    first, second, truth = pair
    fast_first = first  # redis_timeout 1 s: the write waits for it once
    seed(first)
    everything(second)
    with redis_restored(redis_server):
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        write(fast_first, "meta", "global", "written while Redis was frozen")
        assert first._unsynced
        os.kill(redis_server.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while first._unsynced and time.monotonic() < deadline:
            time.sleep(0.1)  # first's timer retries after redis_retry_seconds
        assert not first._unsynced
        assert everything(second) == everything(truth)
        assert everything(first) == everything(truth)


def test_write_mark_keeps_readers_off_the_cache_until_the_writer_ends(pair, redis_url):
    """Between a write's start and end (a crash in between, here), B answers from the database."""
    first, second, truth = pair
    seed(first)
    everything(second)
    first._scripts.run("begin_write", USER, "crashed-writer", 300)
    first.wrapped.set_items(USER, "tabs", [ItemWrite("behind", payload="b")], now_centiseconds())
    assert everything(second) == everything(truth)
    assert everything(second) == everything(truth)  # and nothing stale was stored meanwhile


# -- settings ------------------------------------------------------------------------

def test_settings_build_the_wrapper_from_an_ini(sqlite_url, redis_url):
    settings = parse_settings({
        "storage.backend": "redis",
        "storage.wrapped_backend": "tests.storage.test_redis_storage.CountingSQLStorage",
        "storage.sqluri": sqlite_url, "storage.create_tables": "true",
        "storage.redis_url": redis_url, "storage.redis_timeout": "0.25",
        "storage.redis_key_prefix": "other:", "storage.redis_retry_seconds": "5",
        "storage.redis_cache_seconds": "600",
    }).storage
    assert settings.backend_settings.redis_timeout == 0.25
    assert settings.wrapped_backend is CountingSQLStorage
    storage = open_from_settings(StorageBackend, settings)
    try:
        assert isinstance(storage, RedisCachedStorage)
        assert isinstance(storage.wrapped, CountingSQLStorage)
        seed(storage)
        everything(storage)
        assert storage.client.keys("other:u:*")
    finally:
        storage.close()


@pytest.mark.parametrize(("changes", "message"), [
    ({"storage.wrapped_backend": None}, r"storage\.wrapped_backend is required"),
    ({"storage.wrapped_backend": "redis"}, r"storage\.wrapped_backend must name"),
    ({"storage.wrapped_backend": "nosuch"}, r"storage\.wrapped_backend = 'nosuch'"),
    ({"storage.redis_url": None}, r"storage\.redis_url is required"),
    ({"storage.redis_url": "http://x"}, r"storage\.redis_url is not a usable"),
    ({"storage.redis_timeout": "soon"}, r"storage\.redis_timeout must be a number"),
    ({"storage.redis_timeout": "0"}, r"storage\.redis_timeout must be more than 0"),
    ({"storage.redis_cache_seconds": "5"}, r"storage\.redis_cache_seconds must be at least"),
    ({"storage.redis_ttl": "5"}, r"Unknown setting 'storage\.redis_ttl'"),
])
def test_bad_settings_name_the_key(sqlite_url, changes, message):
    raw = {"storage.backend": "redis", "storage.wrapped_backend": "sql",
           "storage.sqluri": sqlite_url, "storage.create_tables": "true",
           "storage.redis_url": "redis://127.0.0.1:1/0"}
    raw.update(changes)
    raw = {key: value for key, value in raw.items() if value is not None}
    with pytest.raises(ConfigError, match=message):
        settings = parse_settings(raw).storage
        open_from_settings(StorageBackend, settings).close()
