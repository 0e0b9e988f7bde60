"""Counter stores (SQLite, MariaDB, PostgreSQL, Redis) and the generic Throttle API."""

import threading

import pytest

from syncserver.errors import ConfigError
from syncserver.settings import parse_settings
from syncserver.throttle import Counter, Policy, Throttle
from syncserver.throttle.sql_store import login_failures
from tests.backends import counter_store
from tests.throttle.conftest import START, make_store

LIFETIME = 100


def test_increment_counts_and_expires(store):
    assert store.increment("k", START, LIFETIME) == Counter(1, START)
    assert store.increment("k", START + 5, LIFETIME) == Counter(2, START + 5)
    assert store.read(["k", "other"], START + 5) == {"k": Counter(2, START + 5)}
    # The lifetime runs from the last increment.
    assert store.read(["k"], START + 5 + LIFETIME - 1) == {"k": Counter(2, START + 5)}
    assert store.read(["k"], START + 5 + LIFETIME) == {}
    assert store.increment("k", START + 5 + LIFETIME, LIFETIME).hits == 1


def test_delete(store):
    store.increment("a", START, LIFETIME)
    store.increment("b", START, LIFETIME)
    store.delete("a")
    store.delete("never-there")
    assert store.read(["a", "b"], START) == {"b": Counter(1, START)}


def test_keys_of_any_length_and_content(store):
    long_key = "login-address:" + "2001:db8::1, " * 40
    odd_key = "login-pair:ünï'; DROP TABLE login_failures; --|::1"
    store.increment(long_key, START, LIFETIME)
    store.increment(long_key, START, LIFETIME)
    store.increment(odd_key, START, LIFETIME)
    assert store.read([long_key, odd_key], START) == {
        long_key: Counter(2, START), odd_key: Counter(1, START)}


def test_concurrent_increments_are_atomic(store_url):
    stores = [make_store(*store_url) for _ in range(4)]
    errors = []

    def hammer(one_store):
        try:
            for _ in range(10):
                one_store.increment("shared", START, LIFETIME)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert stores[0].read(["shared"], START)["shared"].hits == 40
    finally:
        for one_store in stores:
            one_store.close()


def test_expired_sql_rows_are_purged(sqlite_url):
    store = counter_store(sqlite_url)
    try:
        store.increment("old", START, LIFETIME)
        store._purged_at = 0.0
        store.increment("new", START + LIFETIME, LIFETIME)
        with store.engine.connect() as connection:
            keys = [row.counter_key for row in connection.execute(login_failures.select())]
        assert keys == ["new"]
    finally:
        store.close()


POLICY = Policy(max_failures=6, lockout_seconds=60, window_seconds=300, delay_after=3,
                max_delay_seconds=4)


def test_policy_waits():
    def wait(hits, since_last):
        return POLICY.wait(Counter(hits, START), START + since_last)

    assert POLICY.wait(None, START) == 0
    assert [wait(hits, 0) for hits in range(1, 8)] == [0, 0, 1, 2, 4, 60, 60]
    assert wait(4, 1) == 1 and wait(4, 2) == 0
    assert wait(6, 59) == 1 and wait(6, 60) == 0


def test_generic_api_shared_by_two_processes(store_url, clock):
    """Two Throttles (two processes) on one store see each other's failures."""
    first = Throttle(make_store(*store_url), {"reset-code": POLICY}, clock=clock)
    second = Throttle(make_store(*store_url), {"reset-code": POLICY}, clock=clock)
    try:
        assert second.check("reset-code", "alice") == 0   # cached as clean in `second`
        assert [first.record_failure("reset-code", "alice") for _ in range(3)] == [0, 0, 1]
        assert first.check("reset-code", "alice") == 1
        # `second` trusts its clean copy for cache_seconds, then reads the store.
        assert second.check("reset-code", "alice") == 0
        clock.advance(0.5)
        assert second.check("reset-code", "alice") == 0
        clock.advance(0.5)
        assert second.record_failure("reset-code", "alice") == 2   # the shared count is 4
        first.reset("reset-code", "alice")
        clock.advance(2)
        assert second.check("reset-code", "alice") == 0
        assert second.check("reset-code", "bob") == 0
    finally:
        first.close()
        second.close()


def test_redis_down_fails_open(redis_server, redis_url, clock, caplog):
    throttle = Throttle(make_store("redis", redis_url), {"reset-code": POLICY}, clock=clock)
    for _ in range(6):
        throttle.record_failure("reset-code", "alice")
    assert throttle.check("reset-code", "alice") == 60
    redis_server.stop()
    try:
        clock.advance(2)
        with caplog.at_level("WARNING", logger="syncserver.security"):
            assert throttle.check("reset-code", "alice") == 0
            assert throttle.record_failure("reset-code", "alice") == 0
        warnings = [r for r in caplog.records if "ThrottleDown" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        redis_server.start()
        throttle.close()


@pytest.mark.parametrize("settings,message", [
    ({"throttle.lockout_seconds": "1000"}, "throttle.lockout_seconds"),
    ({"throttle.account_lockout_seconds": "901"}, "throttle.account_lockout_seconds"),
    ({"throttle.max_failures": "0"}, "throttle.max_failures"),
    ({"throttle.window_seconds": "abc"}, "throttle.window_seconds"),
])
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(settings)


def test_counter_database_defaults_to_the_accounts_database():
    parsed = parse_settings({"storage.sqluri": "sqlite:///a.db", "auth.sqluri": "sqlite:///b.db",
                             "auth.create_tables": "true"})
    assert parsed.throttle.sqluri == "sqlite:///b.db" and parsed.throttle.create_tables
