"""A worker SIGKILLed during a POST batch: the batch is stored whole or not at all.

The server runs under gunicorn (a master and one worker process). One test
makes the kill land, for certain, while the batch's rows are written but not
committed; the other kills workers at random moments of a stream of batches,
on MariaDB and on SQLite. Afterwards every batch acknowledged with 200 is
complete, every other batch is complete or absent, and the master's new
worker serves the next request.

The same two tests run for Sync 1.1 POSTs and for Storage API 1.5 batch
uploads (``batch=true``, an append, ``commit=true``) killed during the
commit: the staged batch survives the kill, and committing it again stores
all of it.
"""

import contextlib
import http.client
import os
import signal
import threading
import time
import uuid

import pytest
import sqlalchemy

from syncserver.storage import sync15_user_id
from tests.e2e.conftest import Client, register, write_ini
from tests.e2e.sync15 import Sync15Client
from tests.services import GunicornServer

#: A worker killed mid-request: the connection refused or reset, or the answer cut short.
CUT_OFF = (OSError, http.client.HTTPException)

BATCH = 100
MASTER_SECRET = "worker-killed-master-secret"


@pytest.fixture
def start_gunicorn(tmp_path):
    servers = []

    def start(sqluri):
        directory = tmp_path / f"server{len(servers)}"
        directory.mkdir()
        ini = write_ini(directory, 0, {"storage.query_timeout": "60",
                                       "global.master_secret": MASTER_SECRET}, sqluri=sqluri)
        server = GunicornServer(ini, directory).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def batch(prefix, size=BATCH, payload_bytes=2000):
    return [{"id": f"{prefix}{n:03d}", "payload": f"{prefix}{n}".ljust(payload_bytes, ".")}
            for n in range(size)]


def stored_ids(client, collection="bookmarks"):
    response = client.get(f"storage/{collection}")
    assert response.status == 200, response
    return set(response.json())


def kill_worker(server):
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)
    return worker


def wait_for_new_worker(server, dead, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if pids and dead not in pids:
            return
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not replace its worker:\n{server.log()[-3000:]}")


@pytest.mark.mysql
def test_worker_killed_with_the_batch_written_but_not_committed(
        private_mysql_url, start_gunicorn):
    server = start_gunicorn(private_mysql_url)
    _, username, password = register(server)
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    acknowledged = batch("k", 10)
    assert client.post("storage/bookmarks", acknowledged).status == 200
    before = client.get("info/collections").json()

    admin = sqlalchemy.create_engine(private_mysql_url, isolation_level="AUTOCOMMIT")
    database = admin.url.database
    with admin.connect() as blocker:
        # A gap lock where the new collection's timestamp row goes: the batch's
        # rows are all inserted, then its timestamp waits, inside the transaction.
        blocker.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        blocker.exec_driver_sql("BEGIN")
        (user_id,) = blocker.exec_driver_sql("SELECT userid FROM storage_users").scalars()
        blocker.exec_driver_sql(
            "SELECT modified FROM user_collections FORCE INDEX (PRIMARY) "
            "WHERE userid = %s AND collection >= 3 FOR UPDATE", (user_id,))
        doomed = batch("a", BATCH // 2) + batch("z", BATCH // 2)
        poster = threading.Thread(target=_post_ignoring_errors, daemon=True,
                                  args=(server.url, username, password, doomed, "forms"))
        poster.start()
        assert _wait_for_blocked_write(admin, database, user_id, 3) == BATCH
        dead = kill_worker(server)
        blocker.exec_driver_sql("ROLLBACK")
    _wait_for_rollback(admin, user_id, 3)
    admin.dispose()
    poster.join(30)

    wait_for_new_worker(server, dead)
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    assert stored_ids(client) == {item["id"] for item in acknowledged}
    assert stored_ids(client, "forms") == set()
    assert client.get("info/collections").json() == before
    # The next request (the retried batch) succeeds on the new worker.
    response = client.post("storage/forms", doomed)
    assert response.status == 200 and len(response.json()["success"]) == BATCH
    assert stored_ids(client, "forms") == {item["id"] for item in doomed}
    assert stored_ids(client) == {item["id"] for item in acknowledged}


def _post_ignoring_errors(url, username, password, items, collection):
    with contextlib.suppress(OSError):  # the worker dies: the connection breaks
        Client(f"{url}/1.1/{username}/", username, password).post(
            f"storage/{collection}", items)


def _wait_for_blocked_write(admin, database, user_id, collection_id, timeout=30):
    """Uncommitted rows of the batch, once its transaction waits for the gap lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with admin.connect() as connection:
            waiting = connection.exec_driver_sql(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s "
                "AND info LIKE 'INSERT INTO user_collections%%'", (database,)).scalar()
            if waiting:
                connection.exec_driver_sql(
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
                return connection.exec_driver_sql(
                    "SELECT COUNT(*) FROM items WHERE userid = %s AND collection = %s",
                    (user_id, collection_id)).scalar()
        time.sleep(0.02)
    pytest.fail("the batch never reached the gap lock")


def _wait_for_rollback(admin, user_id, collection_id, timeout=30):
    """Until MariaDB has noticed the dead client and undone its rows (seen uncommitted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with admin.connect() as connection:
            connection.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
            left = connection.exec_driver_sql(
                "SELECT COUNT(*) FROM items WHERE userid = %s AND collection = %s",
                (user_id, collection_id)).scalar()
        if not left:
            return
        time.sleep(0.05)
    pytest.fail("the killed worker's rows were not rolled back")


@pytest.mark.parametrize("database", ["sqlite", "mysql"])
def test_workers_killed_at_random_moments_leave_whole_batches(
        database, request, start_gunicorn):
    sqluri = request.getfixturevalue(f"{database}_url")
    server = start_gunicorn(sqluri)
    _, username, password = register(server)
    acknowledged, attempted, unexpected = set(), [], []
    for round_number in range(3):
        stop = threading.Event()

        def stream(round_number=round_number, stop=stop):
            client = Client(f"{server.url}/1.1/{username}/", username, password)
            while not stop.is_set():
                prefix = f"r{round_number}-{uuid.uuid4().hex[:6]}-"
                attempted.append(prefix)
                try:
                    response = client.post("storage/bookmarks", batch(prefix))
                except CUT_OFF:
                    return
                if response.status != 200:
                    unexpected.append(response)
                    return
                acknowledged.add(prefix)

        writer = threading.Thread(target=stream, daemon=True)
        writer.start()
        time.sleep(0.3 + 0.1 * round_number)
        dead = kill_worker(server)
        stop.set()
        writer.join(30)
        wait_for_new_worker(server, dead)

    client = Client(f"{server.url}/1.1/{username}/", username, password)
    ids = stored_ids(client)
    assert not unexpected
    assert acknowledged, "no batch was acknowledged before the kills"
    for prefix in attempted:
        count = sum(1 for item_id in ids if item_id.startswith(prefix))
        if prefix in acknowledged:
            assert count == BATCH, f"acknowledged batch {prefix} has {count} items"
        else:
            assert count in (0, BATCH), f"batch {prefix} was stored in part ({count} items)"


# --- Storage API 1.5: a batch upload killed during its commit ------------------------------


def _commit_ignoring_errors(url, uid, batch_id, items, collection):
    with contextlib.suppress(OSError):  # the worker dies: the connection breaks
        Sync15Client(url, uid, MASTER_SECRET).post(
            f"storage/{collection}?batch={batch_id}&commit=true", items)


def _stage(client, collection, items, chunk=BATCH // 2):
    """Open a batch and append ``items`` to it, ``chunk`` at a time; return its id."""
    opened = client.post(f"storage/{collection}?batch=true", items[:chunk])
    assert opened.status == 202, opened
    batch_id = opened.json()["batch"]
    for start in range(chunk, len(items), chunk):
        appended = client.post(f"storage/{collection}?batch={batch_id}", items[start:start + chunk])
        assert appended.status == 202, appended
    return batch_id


@pytest.mark.mysql
def test_worker_killed_during_a_sync15_commit_leaves_the_batch_staged_and_nothing_written(
        private_mysql_url, start_gunicorn):
    server = start_gunicorn(private_mysql_url)
    uid = 4242
    client = Sync15Client(server.url, uid, MASTER_SECRET)
    acknowledged = batch("k", 10)
    assert client.post("storage/bookmarks", acknowledged).status == 200
    before = client.get("info/collections").json()
    staged = batch("a", BATCH) + batch("z", BATCH)
    batch_id = _stage(client, "forms", staged)
    last = batch("m", BATCH // 2)

    admin = sqlalchemy.create_engine(private_mysql_url, isolation_level="AUTOCOMMIT")
    database = admin.url.database
    user_id = sync15_user_id(uid)
    with admin.connect() as blocker:
        # As for 1.1: the commit's rows are all written, then the collection's
        # timestamp row waits for this gap lock, inside the commit's transaction.
        blocker.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        blocker.exec_driver_sql("BEGIN")
        blocker.exec_driver_sql(
            "SELECT modified FROM user_collections FORCE INDEX (PRIMARY) "
            "WHERE userid = %s AND collection >= 3 FOR UPDATE", (user_id,))
        committer = threading.Thread(target=_commit_ignoring_errors, daemon=True,
                                     args=(server.url, uid, batch_id, last, "forms"))
        committer.start()
        assert _wait_for_blocked_write(admin, database, user_id, 3) == len(staged) + len(last)
        dead = kill_worker(server)
        blocker.exec_driver_sql("ROLLBACK")
    _wait_for_rollback(admin, user_id, 3)
    admin.dispose()
    committer.join(30)

    wait_for_new_worker(server, dead)
    client = Sync15Client(server.url, uid, MASTER_SECRET)
    assert stored_ids(client) == {item["id"] for item in acknowledged}
    assert stored_ids(client, "forms") == set()
    assert client.get("info/collections").json() == before
    # The batch is still staged, whole: the client's retried commit stores all of it.
    response = client.post(f"storage/forms?batch={batch_id}&commit=true", last)
    assert response.status == 200, response
    assert stored_ids(client, "forms") == {item["id"] for item in staged + last}
    assert stored_ids(client) == {item["id"] for item in acknowledged}


@pytest.mark.parametrize("database", ["sqlite", "mysql"])
def test_workers_killed_at_random_moments_leave_whole_sync15_batches(
        database, request, start_gunicorn):
    sqluri = request.getfixturevalue(f"{database}_url")
    server = start_gunicorn(sqluri)
    uid = 4343
    acknowledged, attempted, unexpected = set(), [], []
    for round_number in range(3):
        stop = threading.Event()

        def stream(round_number=round_number, stop=stop):
            client = Sync15Client(server.url, uid, MASTER_SECRET)
            while not stop.is_set():
                prefix = f"r{round_number}-{uuid.uuid4().hex[:6]}-"
                items = batch(prefix, BATCH, payload_bytes=500)
                attempted.append(prefix)
                try:
                    response = client.post("storage/bookmarks?batch=true", items[:30])
                    if response.status == 202:
                        batch_id = response.json()["batch"]
                        for start in (30, 60):
                            response = client.post(f"storage/bookmarks?batch={batch_id}",
                                                   items[start:start + 30])
                            if response.status != 202:
                                break
                        else:
                            response = client.post(
                                f"storage/bookmarks?batch={batch_id}&commit=true", items[90:])
                except CUT_OFF:
                    return  # the worker died under one of the batch's requests
                if response.status != 200:
                    unexpected.append(response)
                    return
                acknowledged.add(prefix)

        writer = threading.Thread(target=stream, daemon=True)
        writer.start()
        time.sleep(0.3 + 0.1 * round_number)
        dead = kill_worker(server)
        stop.set()
        writer.join(30)
        wait_for_new_worker(server, dead)

    client = Sync15Client(server.url, uid, MASTER_SECRET)
    ids = stored_ids(client)
    assert not unexpected
    assert acknowledged, "no batch was acknowledged before the kills"
    for prefix in attempted:
        count = sum(1 for item_id in ids if item_id.startswith(prefix))
        if prefix in acknowledged:
            assert count == BATCH, f"acknowledged batch {prefix} has {count} items"
        else:
            assert count in (0, BATCH), f"batch {prefix} was stored in part ({count} items)"
