"""The Redis cache passes every StorageBackend method on, the admin ones included.

Through ``syncserver-admin`` with ``storage.backend = redis`` on a real
database and the session's private Redis: a per-user quota set by the CLI
is honoured by the Storage API at once (code 14), and ``stats`` works.
"""

import inspect
import json

from webtest import TestApp

from syncserver.app import build_app
from syncserver.storage import StorageBackend
from syncserver.storage.redis import RedisCachedStorage
from tests.admin.conftest import run_admin, write_ini
from tests.support import basic_auth

PASSWORD = "correct horse battery"


def test_every_interface_method_is_overridden():
    """A method the wrapper inherits would answer from the base class, not the wrapped backend."""
    public = {name for name, member in inspect.getmembers(StorageBackend)
              if callable(member) and not name.startswith("_")}
    missing = sorted(name for name in public if name not in vars(RedisCachedStorage))
    assert missing == []


def redis_ini(tmp_path, url, redis_url, **extra):
    return write_ini(tmp_path / "redis.ini", url, **{
        "storage.backend": "redis", "storage.wrapped_backend": "sql",
        "storage.redis_url": redis_url, "auth.strict_usernames": "false", **extra})


def test_set_quota_through_the_cache_is_honoured_by_the_api(tmp_path, admin_url, redis_url):
    ini = redis_ini(tmp_path, admin_url, redis_url)
    settings = {"storage.sqluri": admin_url, "auth.sqluri": admin_url,
                "storage.backend": "redis", "storage.wrapped_backend": "sql",
                "storage.redis_url": redis_url}
    assert run_admin(ini, "user", "add", "alice", "--password-stdin",
                     stdin=PASSWORD + "\n").code == 0
    app = TestApp(build_app(settings))
    try:
        headers = basic_auth("alice", PASSWORD)
        url = "/1.1/alice/storage/bookmarks/"
        app.put_json(url + "a", {"payload": "x" * 2000}, headers=headers)
        # Total usage is now in the cache; the quota must still be read afresh.
        assert app.get("/1.1/alice/info/quota", headers=headers).json == [2000 / 1024, None]

        assert run_admin(ini, "user", "set-quota", "alice", "1").code == 0
        assert app.get("/1.1/alice/info/quota", headers=headers).json[1] == 1
        assert app.put_json(url + "b", {"payload": "y"}, headers=headers, status=400).json == 14
        shown = json.loads(run_admin(ini, "user", "show", "alice", "--json").out)
        assert shown["own_quota_kb"] == 1 and shown["used_bytes"] == 2000

        assert run_admin(ini, "user", "set-quota", "alice", "default").code == 0
        app.put_json(url + "b", {"payload": "y"}, headers=headers)
    finally:
        app.app.close()


def test_stats_and_purge_through_the_cache(tmp_path, admin_url, redis_url):
    ini = redis_ini(tmp_path, admin_url, redis_url)
    run_admin(ini, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    app = TestApp(build_app({"storage.sqluri": admin_url, "auth.sqluri": admin_url,
                             "storage.backend": "redis", "storage.wrapped_backend": "sql",
                             "storage.redis_url": redis_url}))
    try:
        headers = basic_auth("alice", PASSWORD)
        app.post_json("/1.1/alice/storage/bookmarks", [
            {"id": "a", "payload": "abc"}, {"id": "b", "payload": "de"}], headers=headers)
    finally:
        app.app.close()
    result = run_admin(ini, "stats", "--json")
    assert result.code == 0, result
    stats = json.loads(result.out)
    assert stats["accounts"] == 1 and stats["items"] == 2 and stats["bytes"] == 5
    assert stats["collections"] == {"bookmarks": {"users": 1, "items": 2, "bytes": 5}}
