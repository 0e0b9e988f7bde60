"""Failures: 503 for a database that is gone, 500 with a crash id for bugs, nothing leaked."""

import json
import logging
import re
import socket

import pytest
import webtest

from syncserver.app import make_app
from syncserver.storage import ConflictError
from syncserver.storage.sql import SQLStorage
from tests.support import app_settings, basic_auth, sync_username

CRASH_BODY = re.compile(r'^"application error: crash id [0-9a-f]{32}"$')
EMAIL = "erin@example.com"
USERNAME = sync_username(EMAIL)
PASSWORD = "a long password"


class ExplodingStorage(SQLStorage):
    """A storage plugin with a bug in one method (the kind of fault we cannot cause for real)."""

    def get_collection_counts(self, user_id):
        raise RuntimeError("secret-internal-detail")


class CollidingStorage(SQLStorage):
    """A backend whose writes collide with a concurrent change it cannot order.

    The bundled backend's collisions (a collection id taken twenty times in a
    row by other processes) cannot be caused on demand, hence this plugin.
    """

    def set_items(self, *args, **kwargs):
        raise ConflictError("the write collided with a concurrent change")

    def delete_items(self, *args, **kwargs):
        raise ConflictError("the write collided with a concurrent change")


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app(sqlite_url):
    wsgi_app = make_app({}, **app_settings(
        sqlite_url, **{"storage.backend": f"{__name__}.ExplodingStorage"}))
    test_app = webtest.TestApp(wsgi_app)
    test_app.put_json(f"/user/1.0/{USERNAME}", {"email": EMAIL, "password": PASSWORD})
    yield test_app
    wsgi_app.close()


def test_a_bug_gives_500_with_a_crash_id_and_no_traceback(app, caplog):
    caplog.set_level(logging.ERROR, logger="syncserver")
    response = app.get(f"/1.1/{USERNAME}/info/collection_counts",
                       headers=basic_auth(USERNAME, PASSWORD), status=500)
    assert CRASH_BODY.match(response.text)
    assert response.content_type == "application/json"
    assert "secret-internal-detail" not in response.text and "Traceback" not in response.text
    assert "X-Weave-Timestamp" in response.headers
    crash_id = response.text.split()[-1].rstrip('"')
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert crash_id in logged
    assert any(record.exc_info for record in caplog.records)
    assert PASSWORD not in caplog.text


def test_database_down_gives_503_with_retry_after(tmp_path, caplog):
    down = f"mysql+mysqldb://root@127.0.0.1:{closed_port()}/nothing"
    settings = app_settings(down, **{"storage.create_tables": "false", "auth.create_tables": "false",
                                     "global.retry_after": "45"})
    wsgi_app = make_app({}, **settings)
    app = webtest.TestApp(wsgi_app)
    caplog.set_level(logging.ERROR, logger="syncserver")
    for method, path in (("GET", f"/user/1.0/{USERNAME}"),
                         ("GET", f"/1.1/{USERNAME}/info/collections")):
        response = app.request(path, method=method, headers=basic_auth(USERNAME, PASSWORD),
                               expect_errors=True)
        assert response.status_int == 503
        assert response.headers["Retry-After"] == "45"
        assert CRASH_BODY.match(response.text)
    assert PASSWORD not in caplog.text
    heartbeat = app.get("/__heartbeat__", status=503)
    assert heartbeat.json["status"] == "unavailable"
    wsgi_app.close()


def test_auth_database_down_is_never_401(sqlite_url):
    """A user whose credentials cannot be checked gets 503, so clients back off instead of re-asking."""
    settings = app_settings(sqlite_url, **{
        "auth.sqluri": f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/x",
        "auth.create_tables": "false"})
    wsgi_app = make_app({}, **settings)
    response = webtest.TestApp(wsgi_app).get(
        f"/1.1/{USERNAME}/info/collections", headers=basic_auth(USERNAME, PASSWORD), status=503)
    assert "Retry-After" in response.headers
    wsgi_app.close()


def test_undecodable_path_is_not_a_500(app):
    app.get("/1.1/%ff%fe/info/collections", status=404)


def test_rejected_writes_change_nothing(app):
    headers = basic_auth(USERNAME, PASSWORD)
    root = f"/1.1/{USERNAME}/storage/bookmarks"
    app.put(root + "/a", json.dumps({"payload": "original"}), headers=headers)
    before = app.get(root + "?full=1", headers=headers).json
    app.put(root + "/a", "{broken", headers=headers, status=400)
    app.put(root + "/a", json.dumps({"payload": 1}), headers=headers, status=400)
    app.put(root + "/a", json.dumps({"payload": "new"}),
            headers={**headers, "X-If-Unmodified-Since": "1"}, status=412)
    app.post(root, json.dumps([{"id": "a", "payload": "new"}]),
             headers={**headers, "X-If-Unmodified-Since": "1"}, status=412)
    assert app.get(root + "?full=1", headers=headers).json == before


def test_write_conflict_is_400_code_4_not_a_500(sqlite_url, caplog):
    wsgi_app = make_app({}, **app_settings(
        sqlite_url, **{"storage.backend": f"{__name__}.CollidingStorage"}))
    app = webtest.TestApp(wsgi_app)
    app.put_json(f"/user/1.0/{USERNAME}", {"email": EMAIL, "password": PASSWORD})
    headers = basic_auth(USERNAME, PASSWORD)
    root = f"/1.1/{USERNAME}/storage/bookmarks"
    caplog.set_level(logging.WARNING, logger="syncserver")
    for response in (
            app.put(root + "/a", json.dumps({"payload": "x"}), headers=headers, status=400),
            app.post(root, json.dumps([{"id": "a", "payload": "x"}]), headers=headers,
                     status=400),
            app.delete(root, headers=headers, status=400)):
        assert response.json == 4
    assert "collided" in caplog.text
    wsgi_app.close()
