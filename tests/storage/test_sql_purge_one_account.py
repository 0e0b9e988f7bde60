"""MySQL/MariaDB, PostgreSQL: one account's purge takes the user's lock last, never waits holding rows.

Each test holds real locks from a second connection (as a writer of the
server would) at the moment the purge has deleted its rows and is about to
lock the user: the writer must not wait for the purge's transaction, a
writer that wants a row the purge holds must not deadlock, and every
outcome leaves exactly the expired rows gone and the usage exact.
"""

import threading
import time

import pytest
import sqlalchemy

from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import ItemWrite
from syncserver.storage.sql import items_table, storage_users_table
from tests.backends import sql_storage

USER = 7
COLLECTION = 1
EXPIRED, LIVE = 40, 10


@pytest.fixture(params=["mysql", "postgresql"])
def url(request):
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def storage(url):
    built = sql_storage(url)
    if not built._locks_user_last():
        built.close()
        pytest.fail("this MariaDB/MySQL has no SKIP LOCKED and JSON_TABLE "
                    "(MariaDB 10.6, MySQL 8.0.4 have)")
    yield built
    built.close()


@pytest.fixture
def writer(url):
    """A second connection, as one of the server's writers (lock waits give up after 5 s)."""
    engine = sqlalchemy.create_engine(url, isolation_level="READ COMMITTED")
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        connection.exec_driver_sql("SET lock_timeout = '5s'")
    else:
        connection.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 5")
    connection.commit()
    yield connection
    connection.close()
    engine.dispose()


def fill(storage, now_seconds):
    """EXPIRED expired items (2 bytes each) and LIVE live ones (3 bytes) of one user."""
    rows = [{"userid": USER, "collection": COLLECTION, "id": f"old-{n:03d}", "modified": 1,
             "payload": "xx", "payload_size": 2, "ttl": now_seconds - 10 - n}
            for n in range(EXPIRED)]
    rows += [{"userid": USER, "collection": COLLECTION, "id": f"new-{n:03d}", "modified": 1,
              "payload": "yyy", "payload_size": 3, "ttl": now_seconds + 3600}
             for n in range(LIVE)]
    with storage.engine.begin() as connection:
        connection.execute(items_table.insert(), rows)
        connection.execute(storage_users_table.insert(), [
            {"userid": USER, "last_modified": 1, "usage_bytes": 2 * EXPIRED + 3 * LIVE}])


def stored(storage):
    """(ids left, the user's usage_bytes)."""
    with storage.engine.connect() as connection:
        ids = set(connection.execute(sqlalchemy.select(items_table.c.id)).scalars())
        usage = connection.execute(sqlalchemy.select(storage_users_table.c.usage_bytes).where(
            storage_users_table.c.userid == USER)).scalar()
    return ids, usage


def before_user_lock(storage, monkeypatch, action):
    """Run ``action()`` when the purge has deleted its rows and is about to lock the user."""
    real = storage._lock_user_briefly
    calls = []

    def hooked(connection, user_id):
        if not calls:
            action()
        calls.append(user_id)
        return real(connection, user_id)

    monkeypatch.setattr(storage, "_lock_user_briefly", hooked)
    return calls


def test_the_accounts_writer_takes_the_user_lock_while_the_purge_holds_its_rows(
        storage, writer, monkeypatch):
    now_seconds = int(time.time())
    fill(storage, now_seconds)
    lock_seconds = []

    def a_write():
        started = time.monotonic()
        with writer.begin():
            writer.exec_driver_sql(
                f"SELECT userid FROM storage_users WHERE userid = {USER} FOR UPDATE").all()
            writer.exec_driver_sql(
                f"UPDATE storage_users SET usage_bytes = usage_bytes + 100 WHERE userid = {USER}")
        lock_seconds.append(time.monotonic() - started)

    calls = before_user_lock(storage, monkeypatch, a_write)
    transactions = []
    real_classic = storage._purge_transaction
    monkeypatch.setattr(storage, "_purge_transaction",
                        lambda *args: transactions.append(args) or real_classic(*args))
    assert storage.purge_expired(now_seconds) == EXPIRED
    assert calls == [USER]
    # Behind the user's lock (the classic transaction) the write would have waited 5 s.
    assert lock_seconds and lock_seconds[0] < 3.0
    assert transactions == []
    ids, usage = stored(storage)
    assert ids == {f"new-{n:03d}" for n in range(LIVE)}
    assert usage == 3 * LIVE + 100


def test_a_writer_wanting_a_row_the_purge_holds_neither_deadlocks_nor_loses_its_write(
        storage, writer, monkeypatch):
    """The writer has the user's lock and waits for a purged row: the purge gives way."""
    now_seconds = int(time.time())
    fill(storage, now_seconds)
    has_user_lock, errors = threading.Event(), []

    def client_rewrites_an_expired_record():
        try:
            with writer.begin():
                writer.exec_driver_sql(
                    f"SELECT userid FROM storage_users WHERE userid = {USER} FOR UPDATE").all()
                has_user_lock.set()
                # Held by the purge until it gives its deletes up.
                writer.exec_driver_sql(
                    f"UPDATE items SET ttl = {now_seconds + 3600}, payload = 'zzzz', "
                    f"payload_size = 4 WHERE userid = {USER} AND collection = {COLLECTION} "
                    "AND id = 'old-000'")
                writer.exec_driver_sql(
                    f"UPDATE storage_users SET usage_bytes = usage_bytes + 2 WHERE userid = {USER}")
        except Exception as error:  # a deadlock or lock wait timeout would land here
            errors.append(error)

    client = threading.Thread(target=client_rewrites_an_expired_record)

    def start_client():
        client.start()
        assert has_user_lock.wait(5)
        time.sleep(0.1)  # the client now waits for old-000

    before_user_lock(storage, monkeypatch, start_client)
    started = time.monotonic()
    purged = storage.purge_expired(now_seconds)
    client.join(10)
    assert not client.is_alive() and errors == []
    assert time.monotonic() - started < 3
    assert purged == EXPIRED - 1
    ids, usage = stored(storage)
    assert ids == {f"new-{n:03d}" for n in range(LIVE)} | {"old-000"}
    assert usage == 3 * LIVE + 4


def test_the_purge_leaves_a_row_a_writer_holds_and_does_not_wait_for_it(
        storage, writer, monkeypatch):
    now_seconds = int(time.time())
    fill(storage, now_seconds)
    with writer.begin():
        writer.exec_driver_sql(
            f"SELECT id FROM items WHERE userid = {USER} AND collection = {COLLECTION} "
            "AND id = 'old-005' FOR UPDATE").all()
        started = time.monotonic()
        purged = storage.purge_expired(now_seconds)
        took = time.monotonic() - started
    assert took < 3.0
    assert purged == EXPIRED - 1
    ids, usage = stored(storage)
    assert ids == {f"new-{n:03d}" for n in range(LIVE)} | {"old-005"}
    assert usage == 3 * LIVE + 2
    # The next run (a new cut-off) takes it.
    assert storage.purge_expired(now_seconds + 1) == 1
    assert stored(storage) == ({f"new-{n:03d}" for n in range(LIVE)}, 3 * LIVE)


def test_a_user_lock_kept_past_the_patience_sends_the_rows_the_classic_way(
        storage, writer, monkeypatch):
    """The deletes roll back; the same rows then go behind the user's lock, after the write."""
    now_seconds = int(time.time())
    fill(storage, now_seconds)
    holding, gave_up = threading.Event(), threading.Event()

    def long_write():
        with writer.begin():
            writer.exec_driver_sql(
                f"SELECT userid FROM storage_users WHERE userid = {USER} FOR UPDATE").all()
            holding.set()
            gave_up.wait(10)  # kept until the purge has rolled back, however slow the machine
            writer.exec_driver_sql(
                f"UPDATE storage_users SET usage_bytes = usage_bytes + 7 WHERE userid = {USER}")

    client = threading.Thread(target=long_write)

    def start_client():
        client.start()
        assert holding.wait(5)

    before_user_lock(storage, monkeypatch, start_client)
    classic = []
    real_classic = storage._purge_transaction

    def classic_way(pieces, now):
        classic.append(pieces)
        gave_up.set()
        return real_classic(pieces, now)  # waits for the user's lock, then deletes

    monkeypatch.setattr(storage, "_purge_transaction", classic_way)
    started = time.monotonic()
    assert storage.purge_expired(now_seconds) == EXPIRED
    client.join(5)
    assert time.monotonic() - started < 5
    assert [sum(len(ids) for _, _, ids in pieces) for pieces in classic] == [EXPIRED]
    assert stored(storage) == ({f"new-{n:03d}" for n in range(LIVE)}, 3 * LIVE + 7)


def test_items_of_a_user_without_a_row_go_without_a_usage_to_subtract(storage):
    now_seconds = int(time.time())
    with storage.engine.begin() as connection:
        connection.execute(items_table.insert(), [
            {"userid": 9, "collection": COLLECTION, "id": f"old-{n}", "modified": 1,
             "payload": "xx", "payload_size": 2, "ttl": now_seconds - 10} for n in range(5)])
    assert storage.purge_expired(now_seconds) == 5
    with storage.engine.connect() as connection:
        assert connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(
            items_table)).scalar() == 0


def test_when_the_user_lock_waits_after_all_the_write_and_the_purge_both_get_done(
        storage, monkeypatch, caplog):
    """MariaDB now and then waits on the user's SKIP LOCKED instead of skipping it.

    That wait cannot be caused on demand, so here the purge's user lock is a
    plain FOR UPDATE: with the account's writer holding the user and waiting
    for a row the purge holds, the database sees a real deadlock and rolls
    one back. Whichever it is, it runs again: the write lands, the other
    expired rows go, the usage stays exact, and nobody sees an error.
    """
    now_seconds = int(time.time())
    fill(storage, now_seconds)

    def waiting_user_lock(connection, user_id):
        connection.execute(sqlalchemy.select(storage_users_table.c.userid).where(
            storage_users_table.c.userid == user_id).with_for_update()).all()
        return False

    monkeypatch.setattr(storage, "_lock_user_briefly", waiting_user_lock)
    results, errors = [], []

    def client_rewrites_an_expired_record():
        try:
            results.append(storage.set_items(
                USER, "clients", [ItemWrite(id="old-000", payload="zzzz", ttl=3600)],
                now_centiseconds()))
        except Exception as error:
            errors.append(error)

    client = threading.Thread(target=client_rewrites_an_expired_record)
    # MariaDB's wait for a row read in the optimizer shows in no lock table, so
    # the client says when it asks for old-000's lock (holding the user's).
    asked = threading.Event()

    def watch(_conn, _cursor, statement, _params, _context, _many):
        if (threading.current_thread() is client and "FOR UPDATE" in statement
                and "items" in statement):
            asked.set()

    def start_client():
        client.start()
        assert asked.wait(10), "the client never asked for old-000"
        time.sleep(0.2)  # its statement reaches the database and waits

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", watch)
    before_user_lock(storage, monkeypatch, start_client)
    caplog.set_level("INFO", logger="syncserver")
    try:
        purged = storage.purge_expired(now_seconds)
        client.join(30)
    finally:
        sqlalchemy.event.remove(storage.engine, "before_cursor_execute", watch)
    assert not client.is_alive() and errors == [] and len(results) == 1
    retried = [record.getMessage() for record in caplog.records
               if "retried after" in record.getMessage()
               or "deadlocked; done behind the user's lock" in record.getMessage()]
    assert retried, "no deadlock happened: the test did not test anything"
    ids, usage = stored(storage)
    assert ids == {f"new-{n:03d}" for n in range(LIVE)} | {"old-000"}
    assert usage == 3 * LIVE + 4
    # Purge first (the writer retried): all went, old-000 written anew; else all but old-000.
    assert purged in (EXPIRED, EXPIRED - 1)
    assert storage.purge_expired(now_seconds) == 0
