"""The Storage API through the whole app with ``storage.backend = redis``.

Every test of test_storage_api runs again here against the Redis cache over
SQLite, plus a few that need the cache: two apps on one database and one
Redis (two server processes), and Redis going away under a running app.
"""

import pytest
import redis
import webtest

from syncserver.app import make_app
from tests.controllers.conftest import register
from tests.controllers.test_storage_api import *  # noqa: F403 (the same API tests, run again)
from tests.support import app_settings


def redis_settings(redis_url, **overrides):
    return {"storage.backend": "redis", "storage.wrapped_backend": "sql",
            "storage.redis_url": redis_url, "storage.redis_timeout": "0.5", **overrides}


@pytest.fixture
def make_test_app(sqlite_url, redis_url):
    """Like tests/controllers/conftest.py's, with the Redis cache in front of SQLite."""
    built = []

    def build(**overrides):
        wsgi_app = make_app({}, **app_settings(sqlite_url, **redis_settings(redis_url),
                                               **overrides))
        built.append(wsgi_app)
        return webtest.TestApp(wsgi_app)

    yield build
    for wsgi_app in built:
        wsgi_app.close()


def test_the_app_uses_the_cache(app, alice, redis_url):
    app.put_json(f"{alice.root}/storage/meta/global", {"payload": "m"}, headers=alice.headers)
    first = app.get(f"{alice.root}/info/collections", headers=alice.headers).json
    assert app.get(f"{alice.root}/storage/meta/global", headers=alice.headers).json["payload"] == "m"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        (key,) = client.keys("syncserver:u:*")
        assert {"stamps", "meta"} <= set(client.hkeys(key))
    finally:
        client.close()
    assert app.get(f"{alice.root}/info/collections", headers=alice.headers).json == first


def test_two_apps_on_one_database_agree(make_test_app):
    one, two = make_test_app(), make_test_app()
    alice = register(one, "alice@example.com")
    root, headers = alice.root, alice.headers
    assert two.get(f"{root}/info/collections", headers=headers).json == {}
    stamp = one.put_json(f"{root}/storage/meta/global", {"payload": "first"},
                         headers=headers).json
    assert two.get(f"{root}/info/collections", headers=headers).json == {"meta": stamp}
    assert two.get(f"{root}/storage/meta/global", headers=headers).json["payload"] == "first"
    newer = two.put_json(f"{root}/storage/meta/global", {"payload": "second"},
                         headers={**headers, "X-If-Unmodified-Since": str(stamp)}).json
    one.put_json(f"{root}/storage/meta/global", {"payload": "late"}, status=412,
                 headers={**headers, "X-If-Unmodified-Since": str(stamp)})
    assert one.get(f"{root}/info/collections", headers=headers).json == {"meta": newer}
    assert one.get(f"{root}/storage/meta/global", headers=headers).json["payload"] == "second"
    one.post_json(f"{root}/storage/tabs", [{"id": "desktop", "payload": "t"}], headers=headers)
    assert two.get(f"{root}/storage/tabs?full=1", headers=headers).json[0]["payload"] == "t"
    assert two.get(f"{root}/info/collection_counts", headers=headers).json == {
        "meta": 1, "tabs": 1}


def test_redis_going_away_does_not_fail_requests(make_test_app, redis_server):
    app = make_test_app(**{"storage.redis_retry_seconds": "60"})
    alice = register(app, "alice@example.com")
    root, headers = alice.root, alice.headers
    app.put_json(f"{root}/storage/meta/global", {"payload": "before"}, headers=headers)
    app.get(f"{root}/info/collections", headers=headers)
    redis_server.stop()
    try:
        app.put_json(f"{root}/storage/meta/global", {"payload": "during"}, headers=headers)
        assert app.get(f"{root}/storage/meta/global",
                       headers=headers).json["payload"] == "during"
        assert list(app.get(f"{root}/info/collections", headers=headers).json) == ["meta"]
        assert app.get("/__heartbeat__").status_int == 200
    finally:
        redis_server.start()
