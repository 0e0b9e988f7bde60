"""SQLStorage's Sync 1.5 side on real databases: races across instances, killed commits, schema.

Two SQLStorage instances, each with its own engine and pool, stand for two
server processes; a killed commit is a real child process killed with
SIGKILL in the middle of its transaction.
"""

import multiprocessing
import os
import signal
import threading
import time

import pytest
import sqlalchemy

from syncserver import migrations
from syncserver.db import engines
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import (
    SYNC15_WRITES,
    BatchNotFound,
    ItemQuery,
    ItemWrite,
    PreconditionFailed,
    StorageUnavailable,
    sync15_user_id,
)
from syncserver.storage.sql_batches import COMMIT_CHUNK
from tests.backends import sql_storage

USER = sync15_user_id(42)
LIMITS = {"max_total_records": 10_000, "max_total_bytes": 100 * 1024 * 1024}


@pytest.fixture(params=["mysql", "postgresql"])
def server_url(request):
    """The databases with real concurrent writers (SQLite serializes them anyway)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def instances(server_url):
    """Two "processes" on one database."""
    built = [sql_storage(server_url), sql_storage(server_url)]
    yield built
    for storage in built:
        storage.close()


def race(count, target):
    barrier = threading.Barrier(count)
    results, errors = {}, []

    def body(index):
        try:
            barrier.wait(timeout=30)
            results[index] = target(index)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


def staged_batch(storage, collection, tag, count, user=USER):
    batch_id = storage.create_batch(user, collection, now_centiseconds(), 7200)
    for start in range(0, count, 100):
        storage.append_to_batch(user, collection, batch_id, [
            ItemWrite(f"{tag}-{n:05d}", payload=f"{tag} {n} " + "x" * 200, sortindex=n)
            for n in range(start, min(start + 100, count))], now_centiseconds(), **LIMITS)
    return batch_id


def test_racing_batch_commits_on_two_instances_are_whole_and_strictly_ordered(instances):
    first, second = instances
    rounds = 3
    for round_number in range(rounds):
        tags = [f"r{round_number}w{index}" for index in range(4)]
        ids = [staged_batch(instances[index % 2], "bookmarks", tag, 700)
               for index, tag in enumerate(tags)]

        def commit(index, ids=ids, tags=tags):
            return instances[index % 2].commit_batch(
                USER, "bookmarks", ids[index], [ItemWrite("shared", payload=tags[index])],
                now_centiseconds(), **LIMITS)

        results, errors = race(4, commit)
        assert errors == []
        stamps = sorted(result.timestamp for result in results.values())
        assert len(set(stamps)) == 4
        records = first.get_items(USER, "bookmarks", ItemQuery(), True)
        for index, tag in enumerate(tags):
            mine = [record for record in records if record["id"].startswith(tag + "-")]
            assert len(mine) == 700
            assert {record["modified"] for record in mine} == {results[index].timestamp}
        winner = max(results, key=lambda index: results[index].timestamp)
        assert second.get_item(USER, "bookmarks", "shared")["payload"] == tags[winner]
        assert second.get_collection_timestamp(USER, "bookmarks") == stamps[-1]
        assert first.get_storage_timestamp(USER) == stamps[-1]
    assert first.get_collection_counts(USER) == {"bookmarks": rounds * 4 * 700 + 1}


def test_racing_commits_and_writes_keep_stamps_strictly_increasing(instances):
    """Commits racing plain 1.5 writes and deletions of other collections: no stamp twice."""
    batch_ids = [staged_batch(instances[i % 2], "history", f"h{i}", 300) for i in range(3)]

    def act(index):
        storage = instances[index % 2]
        if index < 3:
            return storage.commit_batch(USER, "history", batch_ids[index], [],
                                        now_centiseconds(), **LIMITS).timestamp
        if index < 6:
            return storage.set_items(USER, "tabs", [ItemWrite(f"t{index}", payload="x")],
                                     now_centiseconds(), rules=SYNC15_WRITES).timestamp
        return storage.delete_collection(USER, "forms", now_centiseconds())

    results, errors = race(8, act)
    assert errors == []
    assert len(set(results.values())) == 8
    assert instances[0].get_storage_timestamp(USER) == max(results.values())


def test_eight_racing_create_only_writers_have_one_winner(instances):
    for round_number in range(3):
        item_id = f"keys{round_number}"

        def create(index, item_id=item_id):
            try:
                return instances[index % 2].set_items(
                    USER, "crypto", [ItemWrite(item_id, payload=f"writer {index}")],
                    now_centiseconds(), if_unmodified_since=0, rules=SYNC15_WRITES,
                    precondition="item").timestamp
            except PreconditionFailed as failure:
                return ("lost", failure.timestamp)

        results, errors = race(8, create)
        assert errors == []
        winners = {index: stamp for index, stamp in results.items()
                   if not isinstance(stamp, tuple)}
        assert len(winners) == 1
        ((winner, stamp),) = winners.items()
        assert {value for value in results.values() if isinstance(value, tuple)} == {
            ("lost", stamp)}
        assert instances[1].get_item(USER, "crypto", item_id) == {
            "id": item_id, "payload": f"writer {winner}", "modified": stamp}


def test_racing_item_updates_with_the_same_precondition_have_one_winner(instances):
    base = instances[0].set_items(USER, "meta", [ItemWrite("global", payload="v0")],
                                  now_centiseconds(), rules=SYNC15_WRITES).timestamp
    instances[0].set_items(USER, "meta", [ItemWrite("other", payload="unrelated")],
                           now_centiseconds(), rules=SYNC15_WRITES)

    def update(index):
        try:
            return instances[index % 2].set_items(
                USER, "meta", [ItemWrite("global", payload=f"v{index + 1}")],
                now_centiseconds(), if_unmodified_since=base, rules=SYNC15_WRITES,
                precondition="item").timestamp
        except PreconditionFailed:
            return None

    results, errors = race(8, update)
    assert errors == []
    assert len([stamp for stamp in results.values() if stamp is not None]) == 1


# -- a worker killed during a commit ---------------------------------------------------------

def _commit_in_child(url, batch_id, ready, go):
    """Child process: commit ``batch_id`` after ``go`` (the parent kills it meanwhile)."""
    storage = sql_storage(url)
    # Connect before the signal, so that the commit starts at once.
    storage.get_storage_timestamp(USER)
    ready.set()
    go.wait(timeout=60)
    storage.commit_batch(USER, "history", batch_id, [ItemWrite("final", payload="f")],
                         now_centiseconds(), **LIMITS)
    time.sleep(60)  # committed: the parent kills it all the same


def _outcome(storage, batch_id, count):
    """"committed" or "whole"; fails the test on anything in between."""
    records = storage.get_items(USER, "history", ItemQuery(), True)
    if records:
        assert len(records) == count + 1, "a commit was applied in part"
        assert len({record["modified"] for record in records}) == 1
        with pytest.raises(BatchNotFound):
            storage.commit_batch(USER, "history", batch_id, [], now_centiseconds(), **LIMITS)
        return "committed"
    # Nothing visible: the batch must still hold every staged item.
    result = storage.commit_batch(USER, "history", batch_id, [], now_centiseconds(), **LIMITS)
    assert len(result.modified) == count
    return "whole"


def test_a_worker_killed_during_a_commit_leaves_the_batch_whole_or_committed(database_url):
    count = 4 * COMMIT_CHUNK + 17
    context = multiprocessing.get_context("spawn")
    storage = sql_storage(database_url)
    outcomes = []
    try:
        for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 3.0):
            storage.delete_storage(USER, now_centiseconds())
            batch_id = staged_batch(storage, "history", "k", count)
            ready, go = context.Event(), context.Event()
            child = context.Process(target=_commit_in_child,
                                    args=(database_url, batch_id, ready, go))
            child.start()
            assert ready.wait(timeout=60)
            go.set()
            time.sleep(delay)
            os.kill(child.pid, signal.SIGKILL)
            child.join(timeout=30)
            outcomes.append(_outcome(storage, batch_id, count))
    finally:
        storage.close()
    # The slowest kill comes after the commit; the fastest hits it before or during.
    assert outcomes[-1] == "committed"
    print("outcomes by delay:", outcomes)


# -- schema and outages -------------------------------------------------------------------------

def test_batch_tables_and_indexes(database_url):
    storage = sql_storage(database_url)
    try:
        inspector = sqlalchemy.inspect(storage.engine)
        assert inspector.get_pk_constraint("batches")["constrained_columns"] == ["id"]
        assert inspector.get_pk_constraint("batch_items")["constrained_columns"] == [
            "batch", "id"]
        indexes = {tuple(index["column_names"]) for index in inspector.get_indexes("batches")}
        assert {("userid", "collection"), ("expires",)} <= indexes
        columns = {column["name"] for column in inspector.get_columns("storage_users")}
        assert "deleted_at" in columns
    finally:
        storage.close()


def test_upgrade_from_0004_keeps_every_user_live(database_url):
    engine = engines.create_engine(database_url, pool_size=1)
    try:
        migrations.upgrade(engine, "0004")
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(
                "INSERT INTO storage_users (userid, last_modified, usage_bytes) "
                "VALUES (1, 500, 4)"))
            connection.execute(sqlalchemy.text(
                "INSERT INTO items (userid, collection, id, payload, payload_size, ttl, "
                "modified) VALUES (1, 7, 'a', 'kept', 4, 9999999999, 500)"))
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    storage = sql_storage(database_url)
    try:
        assert storage.get_storage_timestamp(1) == 500
        result = storage.set_items(1, "bookmarks", [ItemWrite("b", payload="x")], 400)
        assert result.timestamp == 501
        batch_id = storage.create_batch(1, "bookmarks", now_centiseconds(), 60)
        storage.commit_batch(1, "bookmarks", batch_id, [ItemWrite("c", payload="y")],
                             now_centiseconds(), **LIMITS)
        assert sorted(r["id"] for r in storage.get_items(1, "bookmarks", ItemQuery(), False)) == [
            "a", "b", "c"]
    finally:
        storage.close()


@pytest.mark.parametrize("kind", ["mysql", "postgresql"])
def test_batches_and_1_5_calls_on_a_database_that_is_down(kind):
    from tests.storage.test_sql_storage import DOWN_URLS, build

    storage = build(DOWN_URLS[kind], create_tables=False)
    now = now_centiseconds()
    calls = [
        lambda: storage.get_storage_timestamp(USER),
        lambda: storage.create_batch(USER, "bookmarks", now, 60),
        lambda: storage.append_to_batch(USER, "bookmarks", "a" * 24, [], now, **LIMITS),
        lambda: storage.commit_batch(USER, "bookmarks", "a" * 24, [], now, **LIMITS),
        lambda: storage.delete_collection(USER, "bookmarks", now),
    ]
    try:
        for call in calls:
            with pytest.raises(StorageUnavailable):
                call()
    finally:
        storage.close()
