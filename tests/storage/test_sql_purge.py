"""SQLStorage's purge of expired items on SQLite, MySQL/MariaDB and PostgreSQL.

A purge transaction takes hundreds of users' keys at once: these tests
check that exactly the rows still expired go, that every user's usage
loses exactly the bytes deleted of theirs, and (MariaDB) that the
statements look the keys up in the primary key.
"""

import threading
import time

import pytest
import sqlalchemy

from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import ItemWrite
from syncserver.storage import sql_schema as schema
from syncserver.storage.sql import items_table, storage_users_table
from syncserver.storage.sql_purge import _PURGE_ROWS_MAX
from tests.backends import sql_storage

#: 300 users: Sync 1.5's are negative; one id needs all 63 bits.
USER_IDS = [n if n % 2 else -n for n in range(1, 300)] + [2 ** 62]
COLLECTIONS = {name: schema.FIXED_COLLECTIONS[name] for name in ("bookmarks", "history", "forms")}
#: Ids the keys must carry byte for byte (JSON on MySQL, arrays on PostgreSQL):
#: expired or not. "twin" and "twin " differ, as they do in the table.
ODD_IDS = {'quote"d': True, "back\\slash": False, "twin": True, "twin ": False, "é": True}
#: Users with items but no storage_users row (loaded without one): their items go too.
ROWLESS_USERS = {101, -202}
#: What a client does between the purge's read of the expired keys and their deletion.
REWRITTEN = (5, "bookmarks", "gone-0")
WIPED_USER = -8


@pytest.fixture
def storage(database_url):
    built = sql_storage(database_url)
    yield built
    built.close()


def fill(storage, now_seconds):
    """300 users x 3 collections, 3 expired items and 2 live ones each; returns the expired keys."""
    items, usage, expired = [], {}, set()
    for user_id in USER_IDS:
        for name, collection_id in COLLECTIONS.items():
            kinds = {f"gone-{n}": True for n in range(3)} | {f"live-{n}": False for n in range(2)}
            if user_id % 50 == 0 and name == "bookmarks":
                kinds |= ODD_IDS
            for number, (item_id, is_expired) in enumerate(sorted(kinds.items())):
                payload = "p" * (user_id % 17 + number + 1) + "é"
                size = len(payload.encode("utf-8"))
                # Expired at spread times, so that keys come in expiry order, not key order.
                ttl = now_seconds - 1 - (user_id * 7 + number) % 500 if is_expired else (
                    now_seconds + 3600)
                items.append({"userid": user_id, "collection": collection_id, "id": item_id,
                              "modified": 1, "payload": payload, "payload_size": size,
                              "ttl": ttl})
                usage[user_id] = usage.get(user_id, 0) + size
                if is_expired:
                    expired.add((user_id, collection_id, item_id))
    users = [{"userid": user_id, "last_modified": 1, "usage_bytes": size}
             for user_id, size in usage.items() if user_id not in ROWLESS_USERS]
    with storage.engine.begin() as connection:
        connection.execute(items_table.insert(), items)
        connection.execute(storage_users_table.insert(), users)
    return expired


def table_state(storage):
    """({(user, collection, id): payload_size}, {user: usage_bytes}) as stored."""
    with storage.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(
            items_table.c.userid, items_table.c.collection, items_table.c.id,
            items_table.c.payload_size)).all()
        usage = dict(connection.execute(sqlalchemy.select(
            storage_users_table.c.userid, storage_users_table.c.usage_bytes)).all())
    return {(user_id, collection_id, item_id): size
            for user_id, collection_id, item_id, size in rows}, usage


@pytest.mark.parametrize("at_once", [True, False], ids=["at-once", "per-piece"])
def test_purge_of_many_users_at_once_deletes_exactly_the_expired_rows(storage, at_once):
    now_seconds = int(time.time())
    expired = fill(storage, now_seconds)
    before, _ = table_state(storage)
    if not at_once:  # as on SQLite, or on a MySQL without JSON_TABLE
        storage._purges_keys_at_once = lambda pieces: False
    # As a purge whose transactions have grown: the whole batch in one transaction.
    storage._purge_rows = _PURGE_ROWS_MAX
    transactions, statements = [], []
    purge_transaction = storage._purge_transaction

    def meanwhile(pieces, now):
        if not transactions:
            user_id, collection, item_id = REWRITTEN
            storage.set_items(user_id, collection, [ItemWrite(item_id, payload="fresh", ttl=3600)],
                              now_centiseconds())
            storage.delete_storage(WIPED_USER, now_centiseconds())
        transactions.append(len(pieces))
        sqlalchemy.event.listen(storage.engine, "before_cursor_execute", record)
        try:
            return purge_transaction(pieces, now)
        finally:
            sqlalchemy.event.remove(storage.engine, "before_cursor_execute", record)

    def record(_conn, _cursor, statement, _params, _context, _many):
        statements.append(statement)

    storage._purge_transaction = meanwhile
    purged = storage.purge_expired(now_seconds, batch_size=10_000)

    rewritten = (REWRITTEN[0], COLLECTIONS[REWRITTEN[1]], REWRITTEN[2])
    gone_with_storage = {key for key in before if key[0] == WIPED_USER}
    assert purged == len(expired - {rewritten} - gone_with_storage)
    assert transactions == [len(USER_IDS) * len(COLLECTIONS)]
    after, usage = table_state(storage)
    assert set(after) == set(before) - expired - gone_with_storage | {rewritten}
    assert after[rewritten] == len("fresh")
    totals = {}
    for (user_id, _, _), size in after.items():
        totals[user_id] = totals.get(user_id, 0) + size
    assert usage == {user_id: totals.get(user_id, 0)
                     for user_id in USER_IDS if user_id not in ROWLESS_USERS}
    item_deletes = [statement for statement in statements
                    if "DELETE" in statement.upper() and "items" in statement]
    if at_once and storage.database.dialect != "sqlite":
        assert len(item_deletes) == 1
        reads = [statement for statement in statements
                 if "JSON_TABLE" in statement and "DELETE" not in statement.upper()
                 and "UPDATE" not in statement.upper()]
        assert len(reads) == (1 if storage.database.dialect == "mysql" else 0)
        # Every user's usage in one UPDATE, not one per user.
        usage_updates = [statement for statement in statements
                         if statement.lstrip().upper().startswith("UPDATE")
                         and "storage_users.usage_bytes" in statement]
        assert len(usage_updates) == 1
        assert "JSON_TABLE" in usage_updates[0] or "unnest" in usage_updates[0]
    assert storage.purge_expired(now_seconds) == 0


def test_mariadb_purge_looks_keys_up_in_the_primary_key(mysql_url):
    """With 900 (user, collection) pieces, both statements are eq_ref lookups on PRIMARY."""
    storage = sql_storage(mysql_url)
    try:
        if not storage._purges_keys_at_once([(1, 1, []), (2, 1, [])]):
            pytest.skip("this MySQL/MariaDB has no JSON_TABLE: the purge goes piece by piece")
        now_seconds = int(time.time())
        by_owner = {}
        for user_id, collection_id, item_id in fill(storage, now_seconds):
            by_owner.setdefault((user_id, collection_id), []).append(item_id)
        pieces = [(user_id, collection_id, sorted(ids))
                  for (user_id, collection_id), ids in sorted(by_owner.items())]
        assert len(pieces) == len(USER_IDS) * len(COLLECTIONS)
        params = schema.purge_keys_params("mysql", pieces, now_seconds)
        with storage.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE TABLE items").all()
            for statement in (schema.PURGEABLE_KEYS_USAGE, schema.PURGE_KEYS):
                plan = connection.execute(
                    sqlalchemy.text("EXPLAIN " + statement.text), params).mappings().all()
                lookups = [(row["type"], row["key"]) for row in plan if row["table"] == "items"]
                assert lookups == [("eq_ref", "PRIMARY")], plan
    finally:
        storage.close()


def test_one_large_accounts_purge_deletes_by_its_id_list_on_mysql(storage):
    """A transaction of one (user, collection) piece: a primary-key range, not a join."""
    pieces = [(USER_IDS[0], 1, ["a", "b"])]
    many = pieces + [(USER_IDS[1], 1, ["c"])]
    dialect = storage.database.dialect
    if dialect == "postgresql":
        assert storage._purges_keys_at_once(pieces)
    elif dialect == "sqlite":
        assert not storage._purges_keys_at_once(many)
    else:
        assert not storage._purges_keys_at_once(pieces)
        assert storage._purges_keys_at_once(many)


@pytest.mark.parametrize("skip_locked", [True, False], ids=["user-lock-last", "user-lock-first"])
def test_one_accounts_purge_steps_aside_longer(storage, monkeypatch, skip_locked):
    """Spread over users the purge keeps its pace; one account's transactions step aside longer.

    On MySQL and PostgreSQL they take the user's lock last
    (:meth:`_purge_one_account`) and may grow; where the server has no SKIP
    LOCKED they go behind the user's lock, its writers waiting for each:
    they stay short.
    """
    from syncserver.storage import sql_purge

    now_seconds = int(time.time())
    one_user = [{"userid": 7, "collection": 1, "id": f"old-{n:04d}", "modified": 1,
                 "payload": "x", "payload_size": 1, "ttl": now_seconds - 10}
                for n in range(400)]
    with storage.engine.begin() as connection:
        connection.execute(items_table.insert(), one_user)
        connection.execute(storage_users_table.insert(),
                           [{"userid": 7, "last_modified": 1, "usage_bytes": 400}])
    held_times, pauses, grown, ways = [], [], [], []

    def watched(name):
        real = getattr(storage, name)

        def watching(pieces, now):
            outcome = real(pieces, now)
            held_times.append(outcome[1])
            ways.append(name)
            return outcome
        monkeypatch.setattr(storage, name, watching)

    watched("_purge_transaction")
    watched("_purge_one_account")
    real_adapt = storage._adapt_purge_rows

    def watched_adapt(rows, seconds, may_grow=True):
        grown.append(may_grow)
        return real_adapt(rows, seconds, may_grow)

    monkeypatch.setattr(storage, "_adapt_purge_rows", watched_adapt)
    monkeypatch.setattr(sql_purge.time, "sleep", pauses.append)
    if not skip_locked:
        monkeypatch.setattr(storage, "_locks_user_last", lambda: False)
    storage._purge_rows = 50  # several transactions of the one user
    assert storage.purge_expired(now_seconds, batch_size=1000) == 400
    with storage.engine.connect() as connection:
        assert connection.execute(sqlalchemy.select(storage_users_table.c.usage_bytes)).scalar() == 0
    dialect = storage.database.dialect
    assert len(held_times) >= 2
    if dialect == "sqlite":
        return  # SQLite steps aside by its own rule (after a checkpoint)
    assert set(ways) == {"_purge_one_account" if skip_locked else "_purge_transaction"}
    assert pauses == pytest.approx([held * sql_purge._ONE_USER_YIELD_SHARE
                                    for held in held_times])
    assert grown == [skip_locked] * len(held_times)


@pytest.fixture(params=["mysql", "postgresql"])
def server_url(request):
    return request.getfixturevalue(f"{request.param}_url")


@pytest.mark.parametrize("batch_size", [1, 2], ids=["one-account", "many-users"])
def test_a_purge_waits_for_no_row_outside_its_keys(server_url, batch_size):
    """Not on tables of a few rows either, where the database could scan instead of looking up.

    A writer holds a third user's row and that user's expired item (it is
    rewriting them); purging the first users' items must not wait for
    either. MariaDB's plans for the key join scanned the expiry index and
    storage_users on small tables, and deadlocked with such writers.
    """
    storage = sql_storage(server_url)
    writer_engine = sqlalchemy.create_engine(server_url, isolation_level="READ COMMITTED")
    now_seconds = int(time.time())
    ttls = {1: now_seconds - 100, 2: now_seconds - 50, 3: now_seconds - 10}
    try:
        with storage.engine.begin() as connection:
            connection.execute(items_table.insert(), [
                {"userid": user_id, "collection": 1, "id": "old", "modified": 1, "payload": "xx",
                 "payload_size": 2, "ttl": ttl} for user_id, ttl in ttls.items()])
            connection.execute(storage_users_table.insert(), [
                {"userid": user_id, "last_modified": 1, "usage_bytes": 2} for user_id in ttls])
        purged = []
        with writer_engine.connect() as writer:
            writer.exec_driver_sql(
                "SELECT userid FROM storage_users WHERE userid = 3 FOR UPDATE").all()
            writer.exec_driver_sql(
                "SELECT id FROM items WHERE userid = 3 AND collection = 1 FOR UPDATE").all()
            purge = threading.Thread(target=lambda: purged.append(
                storage.purge_expired(now_seconds, batch_size=batch_size)))
            purge.start()
            purge.join(5)
            finished_while_held = not purge.is_alive()
            writer.rollback()
        purge.join(60)
        assert finished_while_held
        assert purged == [batch_size]
        items, usage = table_state(storage)
        assert items == {(user_id, 1, "old"): 2 for user_id in ttls if user_id > batch_size}
        assert usage == {user_id: 0 if user_id <= batch_size else 2 for user_id in ttls}
    finally:
        writer_engine.dispose()
        storage.close()
