"""MySQL killed, frozen or cutting connections: 503 with Retry-After, then recovery by itself.

Every test ends by reading back what was acknowledged with 200 before the
fault: a fault may fail requests, never lose acknowledged records.
"""

import json
import threading
import time

import pytest
import webtest

from tests.faults.support import Account, assert_unavailable, bounded
from tests.support import sync_username

pytestmark = pytest.mark.mysql


def store_acknowledged(app, account, count=5):
    """Write ``count`` bookmarks that the server acknowledges with 200; return their payloads."""
    payloads = {f"bm{n}": f"acknowledged {n}" for n in range(count)}
    response = app.post_json(f"{account.root}/storage/bookmarks",
                             [{"id": key, "payload": value} for key, value in payloads.items()],
                             headers=account.headers)
    assert sorted(response.json["success"]) == sorted(payloads)
    return payloads


def assert_still_stored(app, account, payloads):
    response = app.get(f"{account.root}/storage/bookmarks?full=1", headers=account.headers)
    stored = {record["id"]: record["payload"] for record in response.json}
    for key, payload in payloads.items():
        assert stored.get(key) == payload, f"acknowledged record {key} lost"


def fill_pool(app, connections=4):
    """Leave several idle connections in each pool, so that all of them die with the server."""
    for engine in {use.database.engine for use in app.app.components.databases.uses()}:
        held = [engine.connect() for _ in range(connections)]
        for connection in held:
            connection.close()


def test_killed_database_gives_503_and_the_same_app_recovers(fault_app, private_mariadb):
    app = fault_app
    alice = Account(app, "alice@example.com")
    acknowledged = store_acknowledged(app, alice)
    fill_pool(app)

    private_mariadb.kill()
    for method, path, body in (
            ("GET", "/info/collections", None),
            ("GET", "/storage/bookmarks?full=1", None),
            ("PUT", "/storage/bookmarks/late", {"payload": "never acknowledged"})):
        response = bounded(lambda m=method, p=path, b=body: app.request(
            alice.root + p, method=m, headers=alice.headers, expect_errors=True,
            body=json.dumps(b).encode() if b is not None else None,
            content_type="application/json" if b is not None else None))
        assert_unavailable(response)
    # Registration and heartbeat too (the auth backend's own pool).
    newcomer = sync_username("newcomer@example.com")
    assert_unavailable(bounded(lambda: app.put_json(
        f"/user/1.0/{newcomer}", {"email": "newcomer@example.com", "password": "p" * 12},
        expect_errors=True)))
    assert bounded(lambda: app.get("/__heartbeat__", expect_errors=True)).status_int == 503

    private_mariadb.start()
    # Several requests at once: none may be handed one of the dead pooled connections.
    results = []

    def read():
        results.append(webtest.TestApp(app.app).get(
            f"{alice.root}/info/collections", headers=alice.headers, expect_errors=True))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [response.status_int for response in results] == [200] * 6
    assert_still_stored(app, alice, acknowledged)
    app.put_json(f"{alice.root}/storage/bookmarks/after", {"payload": "after"},
                 headers=alice.headers)
    assert "late" not in app.get(f"{alice.root}/storage/bookmarks",
                                 headers=alice.headers).json


def test_frozen_database_gives_503_within_the_timeouts_then_recovers(fault_app, private_mariadb):
    """SIGSTOP: TCP connections are still accepted, nothing ever answers."""
    app = fault_app
    bob = Account(app, "bob@example.com")
    acknowledged = store_acknowledged(app, bob)

    private_mariadb.pause()
    try:
        assert_unavailable(bounded(lambda: app.get(
            f"{bob.root}/info/collections", headers=bob.headers, expect_errors=True)))
        assert_unavailable(bounded(lambda: app.put_json(
            f"{bob.root}/storage/bookmarks/frozen", {"payload": "during the freeze"},
            headers=bob.headers, expect_errors=True)))
    finally:
        private_mariadb.resume()

    assert bounded(lambda: app.get(f"{bob.root}/info/collections",
                                   headers=bob.headers)).status_int == 200
    assert_still_stored(app, bob, acknowledged)
    app.put_json(f"{bob.root}/storage/bookmarks/thawed", {"payload": "after"},
                 headers=bob.headers)


def app_connection_ids(admin_engine, database):
    """Ids of the server-side connections the app holds on ``database``."""
    with admin_engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT id FROM information_schema.processlist "
            "WHERE db = %s AND id <> CONNECTION_ID()", (database,)).scalars().all()


def test_pooled_connections_killed_between_requests_are_replaced(fault_app, admin_engine):
    """What MySQL's wait_timeout does to idle pooled connections."""
    app = fault_app
    carol = Account(app, "carol@example.com")
    acknowledged = store_acknowledged(app, carol)
    fill_pool(app)
    database = admin_engine.url.database
    ids = app_connection_ids(admin_engine, database)
    assert ids
    with admin_engine.connect() as connection:
        for connection_id in ids:
            connection.exec_driver_sql(f"KILL {int(connection_id)}")

    assert app.get(f"{carol.root}/info/collections", headers=carol.headers).status_int == 200
    app.put_json(f"{carol.root}/storage/bookmarks/next", {"payload": "next"},
                 headers=carol.headers)
    assert_still_stored(app, carol, acknowledged)


def test_connection_killed_mid_request_fails_cleanly_and_the_next_succeeds(
        make_fault_app, admin_engine, caplog):
    """KILL the app's connection while its write waits inside the transaction."""
    # A lock wait that cannot time out first: the KILL must be what ends it.
    app = make_fault_app(**{"storage.query_timeout": "60"})
    dave = Account(app, "dave@example.com")
    acknowledged = store_acknowledged(app, dave)
    database = admin_engine.url.database

    with admin_engine.connect() as blocker:
        # Hold dave's row lock, so that the next write waits inside its transaction.
        blocker.exec_driver_sql("BEGIN")
        blocker.exec_driver_sql("SELECT last_modified FROM storage_users FOR UPDATE")
        request = threading.Thread(target=lambda: results.append(app.put_json(
            f"{dave.root}/storage/bookmarks/killed", {"payload": "in flight"},
            headers=dave.headers, expect_errors=True)))
        results = []
        request.start()
        victim = _wait_for_lock_waiter(admin_engine, database)
        with admin_engine.connect() as killer:
            killer.exec_driver_sql(f"KILL {int(victim)}")
        request.join(60)
        assert not request.is_alive(), "the killed request hung"
        blocker.exec_driver_sql("ROLLBACK")

    assert_unavailable(results[0])
    assert "1205" not in caplog.text  # a lock wait timeout would not be the KILL
    app.put_json(f"{dave.root}/storage/bookmarks/next", {"payload": "next"},
                 headers=dave.headers)
    assert_still_stored(app, dave, dict(acknowledged, next="next"))
    assert app.get(f"{dave.root}/storage/bookmarks/killed", headers=dave.headers,
                   expect_errors=True).status_int == 404


def _wait_for_lock_waiter(admin_engine, database, timeout=30):
    """Id of the connection waiting to lock a user's row on ``database``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with admin_engine.connect() as connection:
            waiting = connection.exec_driver_sql(
                "SELECT id FROM information_schema.processlist WHERE db = %s "
                "AND id <> CONNECTION_ID() AND info LIKE '%%FROM storage_users%%FOR UPDATE%%'",
                (database,)).scalars().all()
        if waiting:
            return waiting[0]
        time.sleep(0.05)
    pytest.fail("the write never waited for the lock")
