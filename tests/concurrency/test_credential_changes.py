"""A credential change is honoured by every worker on its next request (gunicorn -w 2 + Redis).

Both workers remember alice's login (many requests on fresh connections land
on both). Right after the change's response, every request with the old
credentials must fail, on whichever worker it lands, and a deleted account
must write nothing more. Without Redis the documented bound is one second
(the SQL change feed), checked too.
"""

import sqlalchemy

from tests.e2e.conftest import Client, new_account, write_ini
from tests.services import GunicornServer

REQUESTS_AFTER = 150
WARM_UP = 40


def start_cluster(tmp_path, sqluri, extra):
    # No login throttle: every refusal must be the 401 of a wrong password, not a lockout.
    ini = write_ini(tmp_path, 0, {"auth.credentials_cache_seconds": "300",
                                  "throttle.enabled": "false", **extra}, sqluri=sqluri)
    return GunicornServer(ini, tmp_path, workers=2, threads=4).start()


def fresh(server, username, password):
    """One request on a new connection: gunicorn hands it to either worker."""
    client = Client(server.url + f"/1.1/{username}/", username, password)
    return client


def statuses(server, username, password, method="GET", path="info/collections", count=1,
             body=None):
    seen = []
    for _ in range(count):
        client = fresh(server, username, password)
        try:
            seen.append(client.request(method, path, body).status)
        finally:
            client.close()
    return seen


def register(server):
    email, username, password = new_account("cred")
    client = Client(server.url)
    try:
        answer = client.put(f"/user/1.0/{username}", {"password": password, "email": email})
        assert answer.status == 200, answer
    finally:
        client.close()
    return email, username, password


def change_password(server, username, old, new):
    client = Client(server.url, username, old)
    try:
        answer = client.post(f"/user/1.0/{username}/password", new.encode(),
                             content_type="text/plain")
        assert answer.status == 200, answer
    finally:
        client.close()


def test_password_change_and_deletion_are_honoured_at_once(tmp_path, sqlite_url, redis_url):
    server = start_cluster(tmp_path, sqlite_url, {"auth.redis_url": redis_url})
    try:
        _, username, password = register(server)
        assert statuses(server, username, password, count=WARM_UP) == [200] * WARM_UP
        change_password(server, username, password, "a brand new password")
        after = statuses(server, username, password, count=REQUESTS_AFTER)
        assert set(after) == {401}
        assert statuses(server, username, "a brand new password", count=10) == [200] * 10

        _, victim, victim_password = register(server)
        assert statuses(server, victim, victim_password, "PUT", "storage/tabs/t", WARM_UP,
                        {"payload": "before"}) == [200] * WARM_UP
        user_id = user_id_of(sqlite_url, victim)
        client = Client(server.url, victim, victim_password)
        try:
            assert client.delete(f"/user/1.0/{victim}").status == 200
        finally:
            client.close()
        writes = statuses(server, victim, victim_password, "PUT", "storage/tabs/t",
                          REQUESTS_AFTER, {"payload": "after"})
        assert set(writes) == {401}
        assert rows_of(sqlite_url, user_id) == 0  # nothing came back under the deleted id
    finally:
        server.stop()


def test_without_redis_the_bound_is_one_second(tmp_path, sqlite_url):
    import time

    server = start_cluster(tmp_path, sqlite_url, {})
    try:
        _, username, password = register(server)
        assert statuses(server, username, password, count=WARM_UP) == [200] * WARM_UP
        change_password(server, username, password, "a brand new password")
        time.sleep(1.1)
        after = statuses(server, username, password, count=60)
        assert set(after) == {401}
    finally:
        server.stop()


def user_id_of(url, username):
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(
                "SELECT userid FROM users WHERE username = :u"), {"u": username}).scalar_one()
    finally:
        engine.dispose()


def rows_of(url, user_id):
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(
                "SELECT COUNT(*) FROM items WHERE userid = :u"), {"u": user_id}).scalar_one()
    finally:
        engine.dispose()
