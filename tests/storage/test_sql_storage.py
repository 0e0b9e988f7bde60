"""SQLStorage on SQLite, MySQL/MariaDB and PostgreSQL: the conformance suite plus SQL specifics."""

import os
import threading

import pytest
import sqlalchemy

from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.settings import StorageSettings
from syncserver.storage import (
    ItemQuery,
    ItemWrite,
    PreconditionFailed,
    StorageBackend,
    StorageUnavailable,
)
from syncserver.storage.sql import SQLStorage
from syncserver.storage.sql_schema import FIRST_CUSTOM_COLLECTION_ID, FIXED_COLLECTIONS
from syncserver.testing.storage_conformance import StorageConformanceTests
from tests.backends import open_from_settings

#: Nothing listens on port 1: connections are refused at once.
DOWN_URLS = {
    "mysql": "mysql+mysqldb://root@127.0.0.1:1/syncserver",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/syncserver",
}


def build(url, create_tables=True, **overrides):
    """As the server builds it: the migrations run first, or the schema is checked."""
    settings = StorageSettings(backend=SQLStorage, sqluri=url, create_tables=create_tables,
                               **overrides)
    return open_from_settings(StorageBackend, settings)


@pytest.fixture
def make_storage():
    """Build SQLStorage instances that are closed after the test."""
    built = []

    def make(url, **options):
        storage = build(url, **options)
        built.append(storage)
        return storage

    yield make
    for storage in built:
        storage.close()


class TestSQLStorageConformance(StorageConformanceTests):
    @pytest.fixture
    def storage(self, database_url, make_storage):
        return make_storage(database_url)


def test_sqlite_runs_in_wal_mode(sqlite_url, make_storage):
    storage = make_storage(sqlite_url)
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"


def test_sqlite_folder_is_created(tmp_path, make_storage):
    path = tmp_path / "var" / "deeper" / "sync.db"
    storage = make_storage(f"sqlite:///{path}")
    storage.set_items(1, "bookmarks", [ItemWrite("a", payload="x")], now_centiseconds())
    assert path.exists()


def test_schema_and_indexes(database_url, make_storage):
    storage = make_storage(database_url)
    inspector = sqlalchemy.inspect(storage.engine)
    assert {"collections", "user_collections", "storage_users", "items"} <= set(
        inspector.get_table_names())
    indexes = {tuple(index["column_names"]) for index in inspector.get_indexes("items")}
    assert ("userid", "collection", "modified", "id", "ttl") in indexes
    assert ("userid", "collection", "sortindex", "id", "ttl") in indexes
    assert ("userid", "collection", "payload_size", "ttl") in indexes
    assert ("ttl",) in indexes
    assert inspector.get_pk_constraint("items")["constrained_columns"] == [
        "userid", "collection", "id"]
    assert inspector.get_pk_constraint("user_collections")["constrained_columns"] == [
        "userid", "collection"]
    with storage.engine.connect() as connection:
        seeded = dict(connection.execute(
            sqlalchemy.text("SELECT name, id FROM collections")).all())
    assert seeded == FIXED_COLLECTIONS


def test_create_tables_twice_is_harmless(database_url, make_storage):
    first = make_storage(database_url)
    first.set_items(1, "custom", [ItemWrite("a", payload="x")], now_centiseconds())
    second = make_storage(database_url)
    assert second.get_item(1, "custom", "a")["payload"] == "x"
    assert second.get_collection_timestamps(1) == first.get_collection_timestamps(1)


def test_create_tables_from_two_processes_at_once(database_url, make_storage):
    errors = []
    barrier = threading.Barrier(2)

    def start():
        try:
            barrier.wait(timeout=10)
            make_storage(database_url)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert make_storage(database_url, create_tables=False).is_healthy()


def test_tables_are_not_created_without_create_tables(database_url):
    with pytest.raises(ConfigError, match=r"storage\.create_tables is false .* no table"):
        build(database_url, create_tables=False)
    engine = sqlalchemy.create_engine(database_url)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_reads_and_empty_deletes_do_not_create_collections(database_url, make_storage):
    storage = make_storage(database_url)
    now = now_centiseconds()
    storage.get_items(1, "ghost", ItemQuery(), True)
    storage.get_item(1, "ghost", "a")
    storage.get_collection_timestamp(1, "ghost")
    storage.delete_item(1, "ghost", "a", now)
    storage.delete_items(1, "ghost", ItemQuery(), now, if_unmodified_since=0)
    with storage.engine.connect() as connection:
        count = connection.execute(sqlalchemy.text(
            "SELECT COUNT(*) FROM collections WHERE name = 'ghost'")).scalar()
        users = connection.execute(sqlalchemy.text("SELECT COUNT(*) FROM storage_users")).scalar()
    assert (count, users) == (0, 0)


def test_import_opens_no_connection():
    import importlib

    import syncserver.storage.sql as module
    importlib.reload(module)  # would fail loudly if it needed a database


@pytest.mark.parametrize("kind", sorted(DOWN_URLS))
def test_database_down(kind, make_storage):
    storage = make_storage(DOWN_URLS[kind], create_tables=False)
    assert storage.is_healthy() is False
    now = now_centiseconds()
    calls = [
        lambda: storage.get_collection_timestamps(1),
        lambda: storage.get_collection_counts(1),
        lambda: storage.get_total_usage(1),
        lambda: storage.get_items(1, "bookmarks", ItemQuery(), True),
        lambda: storage.get_items(1, "not-cached", ItemQuery(), True),
        lambda: storage.get_item(1, "bookmarks", "a"),
        lambda: storage.set_items(1, "bookmarks", [ItemWrite("a", payload="x")], now),
        lambda: storage.set_items(1, "new-coll", [ItemWrite("a", payload="x")], now),
        lambda: storage.delete_item(1, "bookmarks", "a", now),
        lambda: storage.delete_items(1, "bookmarks", ItemQuery(), now),
        lambda: storage.delete_storage(1, now),
        lambda: storage.delete_user(1),
        lambda: storage.purge_expired(0),
    ]
    for call in calls:
        with pytest.raises(StorageUnavailable):
            call()
    with pytest.raises(BackendUnavailable):
        build(DOWN_URLS[kind], create_tables=True)


def test_missing_or_bad_sqluri_is_a_config_error():
    with pytest.raises(ConfigError, match=r"storage\.sqluri is required"):
        SQLStorage.from_settings(StorageSettings(backend=SQLStorage))
    with pytest.raises(ConfigError, match=r"storage\.sqluri"):
        SQLStorage.from_settings(StorageSettings(backend=SQLStorage, sqluri="nonsense://x/y"))


def test_concurrent_collection_id_allocation(database_url, make_storage):
    """Two processes (here: two instances, each with its own cache) racing on new names."""
    instances = [make_storage(database_url), make_storage(database_url, create_tables=False)]
    names = [f"custom{n}" for n in range(6)]
    errors = []
    barrier = threading.Barrier(4)

    def allocate(index):
        storage = instances[index % 2]
        try:
            barrier.wait(timeout=10)
            order = names if index < 2 else list(reversed(names))
            for name in order:
                storage.set_items(index, name, [ItemWrite("a", payload=name)], now_centiseconds())
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with instances[0].engine.connect() as connection:
        rows = dict(connection.execute(sqlalchemy.text(
            "SELECT name, id FROM collections WHERE id >= :first"),
            {"first": FIRST_CUSTOM_COLLECTION_ID}).all())
    assert sorted(rows) == sorted(names)
    assert sorted(rows.values()) == list(range(FIRST_CUSTOM_COLLECTION_ID,
                                               FIRST_CUSTOM_COLLECTION_ID + len(names)))
    for user in range(4):
        for storage in instances:
            assert set(storage.get_collection_timestamps(user)) == set(names)
            assert storage.get_item(user, "custom3", "a")["payload"] == "custom3"


def test_statements_per_request(database_url, make_storage):
    """Keep requests cheap: guards against accidental extra round trips."""
    storage = make_storage(database_url)
    now = now_centiseconds()
    storage.set_items(1, "bookmarks", [ItemWrite("a", payload="x")], now)
    statements = []

    def count(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().split(None, 1)[0].upper() in (
                "SELECT", "INSERT", "UPDATE", "DELETE"):
            statements.append(statement)

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", count)

    def measure(call):
        statements.clear()
        call()
        return len(statements)

    lock = 2 if storage.engine.dialect.name == "postgresql" else 1
    assert measure(lambda: storage.get_collection_timestamps(1)) == 1
    assert measure(lambda: storage.get_items(1, "bookmarks", ItemQuery(newer=0), True)) == 1
    writes = [ItemWrite(str(n), payload="y", sortindex=n) for n in range(100)]
    # lock (+ collection stamp) + existing rows + insert + collection stamp + user stamp
    assert measure(lambda: storage.set_items(1, "bookmarks", writes, now)) == lock + 4
    # all 100 exist now: one executemany UPDATE instead of the INSERT
    assert measure(lambda: storage.set_items(1, "bookmarks", writes, now)) == lock + 4
    assert measure(lambda: storage.delete_item(1, "bookmarks", "1", now)) == lock + 3
    # One item (a PUT): SQLite and MySQL read it with the lock, in the same statement.
    item_read = 1 if storage.engine.dialect.name == "postgresql" else 0
    for item in (ItemWrite("7", payload="z"), ItemWrite("new", payload="z")):
        # lock (+ item) + insert or update + collection stamp + user stamp
        assert measure(lambda item=item: storage.set_items(1, "bookmarks", [item], now)) == (
            lock + item_read + 3), item


def test_a_write_of_one_item_sees_it_as_stored(database_url, make_storage):
    """Read with the user's lock or on its own, the item's state decides the write."""
    storage = make_storage(database_url)
    now = now_centiseconds()
    storage.set_items(1, "bookmarks", [ItemWrite("a", payload="one", ttl=1000)], now)
    usage = storage.get_total_usage(1)
    # Stored: only the sortindex changes, the payload and its bytes stay.
    result = storage.set_items(1, "bookmarks", [ItemWrite("a", sortindex=5)], now + 100)
    record = storage.get_item(1, "bookmarks", "a")
    assert (record["payload"], record["sortindex"]) == ("one", 5)
    assert storage.get_total_usage(1) == usage
    # Another user's item of the same id and collection is not this user's.
    storage.set_items(2, "bookmarks", [ItemWrite("a", payload="other's")], now + 200)
    assert storage.get_item(1, "bookmarks", "a")["payload"] == "one"
    assert storage.get_total_usage(2) == len("other's")
    # A precondition on the item reads its stamp.
    with pytest.raises(PreconditionFailed):
        storage.set_items(1, "bookmarks", [ItemWrite("a", payload="two")], now + 300,
                          if_unmodified_since=now - 1, precondition="item")
    assert result.modified["a"] == storage.get_item(1, "bookmarks", "a")["modified"]


def test_large_user_ids_and_payload_on_every_database(database_url, make_storage):
    storage = make_storage(database_url)
    user = 2 ** 62
    payload = "é" * (128 * 1024)  # 256 KiB of UTF-8
    storage.set_items(user, "bookmarks", [ItemWrite("a", payload=payload)], now_centiseconds())
    assert storage.get_item(user, "bookmarks", "a")["payload"] == payload
    assert storage.get_total_usage(user) == 256 * 1024


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_sqlite_folder_is_private(tmp_path, make_storage):
    path = tmp_path / "private" / "sync.db"
    make_storage(f"sqlite:///{path}")
    assert (path.parent.stat().st_mode & 0o077) == 0
