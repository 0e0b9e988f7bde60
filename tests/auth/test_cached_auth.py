"""The login cache in front of every auth backend, across "processes", with and without Redis.

Each "process" is its own :class:`CachedAuth` (its own memory) on one SQL
database and, where used, one real Redis. The SQL change feed is read at most
once an hour here, so anything seen at once came through Redis.
"""

import logging

import pytest

from syncserver.auth import AuthBackend, AuthUnavailable
from syncserver.auth.cached import REDIS_RETRY_SECONDS, CachedAuth
from syncserver.auth.credential_changes import ChangeFeed
from syncserver.auth.credential_versions import CredentialVersions
from syncserver.auth.credentials_cache import CredentialsCache
from syncserver.auth.sql import SQLAuth
from syncserver.settings import parse_settings
from tests.backends import open_from_settings, prepared_database
from tests.support import cheap_password_hasher

HOUR = 3600.0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class CountingSQLAuth(SQLAuth):
    """SQLAuth counting the password checks that reach it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checks = 0

    def authenticate(self, username, password):
        self.checks += 1
        return super().authenticate(username, password)


@pytest.fixture
def database(sqlite_url):
    database = prepared_database(sqlite_url)
    yield database
    database.close()


@pytest.fixture
def make_process(database, redis_url):
    built = []

    def make(redis=True, feed_poll=HOUR, clock=None, cache_seconds=300):
        backend = CountingSQLAuth(database, password_hasher=cheap_password_hasher())
        versions = CredentialVersions.from_url(redis_url, cache_seconds) if redis else None
        feed = ChangeFeed(database, cache_seconds, poll_seconds=feed_poll) if feed_poll else None
        process = CachedAuth(backend, CredentialsCache(cache_seconds), versions=versions,
                             feed=feed, **({"clock": clock} if clock else {}))
        built.append(process)
        return process

    yield make
    for process in built:
        if process.versions is not None:
            process.versions.close()


@pytest.fixture
def alice(make_process):
    make_process().create_user("alice", "old password", "alice@example.com")
    return "alice"


def test_repeated_logins_are_answered_from_memory(make_process, alice):
    process = make_process()
    for _ in range(5):
        assert process.authenticate(alice, "old password") is not None
    assert process.backend.checks == 1
    assert process.authenticate(alice, "wrong password") is None
    assert process.authenticate(alice, "wrong password") is None
    assert process.backend.checks == 3  # failures are never remembered


@pytest.mark.parametrize("change", ["password", "disable", "delete"])
def test_a_change_in_one_process_is_honoured_by_another_on_its_next_request(
        make_process, alice, change):
    a, b = make_process(), make_process()
    assert b.authenticate(alice, "old password") is not None  # remembered by b
    assert b.authenticate(alice, "old password") is not None
    assert b.backend.checks == 1
    if change == "password":
        a.set_password(alice, "new password")
    elif change == "disable":
        a.set_enabled(alice, False)
    else:
        assert a.delete_user(alice) is True
    # No poll interval, no expiry: b's very next request checks again and is refused.
    assert b.authenticate(alice, "old password") is None
    if change == "password":
        assert b.authenticate(alice, "new password") is not None


def test_unrelated_users_stay_remembered(make_process, alice):
    a, b = make_process(), make_process()
    a.create_user("bob", "bob password", None)
    assert b.authenticate(alice, "old password") is not None
    a.set_password("bob", "another password")
    assert b.authenticate(alice, "old password") is not None
    assert b.backend.checks == 1


def test_without_redis_other_processes_follow_the_feed_within_its_interval(make_process, alice):
    clock = Clock()
    a = make_process(redis=False)
    b = make_process(redis=False, feed_poll=1.0)
    b.feed.clock = clock
    assert b.authenticate(alice, "old password") is not None
    a.set_password(alice, "new password")
    assert b.authenticate(alice, "old password") is not None  # within the second
    clock.now += 1.0
    assert b.authenticate(alice, "old password") is None


def test_redis_down_for_a_reader_falls_back_to_the_feed_with_one_warning(
        make_process, alice, redis_server, caplog):
    clock = Clock()
    a = make_process(redis=False)  # the writer only records in the feed
    b = make_process(feed_poll=1.0, clock=clock)
    b.feed.clock = clock
    assert b.authenticate(alice, "old password") is not None
    redis_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="syncserver.auth"):
            for _ in range(3):
                assert b.authenticate(alice, "old password") is not None
        assert caplog.text.count("credential versions unavailable") == 1
        a.set_password(alice, "new password")
        clock.now += 1.0
        assert b.authenticate(alice, "old password") is None
        assert b.authenticate(alice, "new password") is not None
    finally:
        redis_server.start()
    clock.now += REDIS_RETRY_SECONDS
    assert b.authenticate(alice, "new password") is not None


def test_redis_down_for_a_writer_still_records_the_change_in_the_feed(
        make_process, alice, redis_server):
    clock = Clock()
    a = make_process()
    b = make_process(redis=False, feed_poll=1.0)
    b.feed.clock = clock
    assert b.authenticate(alice, "old password") is not None
    redis_server.stop()
    try:
        a.set_password(alice, "new password")  # no error: the feed carries it
    finally:
        redis_server.start()
    clock.now += 1.0
    assert b.authenticate(alice, "old password") is None


def test_no_redis_and_no_feed_to_tell_is_an_outage(make_process, alice, redis_server):
    a = make_process(feed_poll=0)
    redis_server.stop()
    try:
        with pytest.raises(AuthUnavailable):
            a.set_password(alice, "new password")
    finally:
        redis_server.start()


def test_a_redis_restarted_empty_makes_remembered_logins_check_again(
        make_process, alice, redis_url):
    a, b = make_process(), make_process()
    a.set_password(alice, "changed once")  # alice now has a version in Redis
    assert b.authenticate(alice, "changed once") is not None
    assert b.backend.checks == 1
    b.versions.client.flushall()  # what an empty restart looks like
    assert b.authenticate(alice, "changed once") is not None
    assert b.backend.checks == 2  # the version it remembered is gone: checked again
    assert b.authenticate(alice, "changed once") is not None
    assert b.backend.checks == 2


def test_an_email_change_is_forgotten_at_once_where_it_was_made(make_process, alice):
    a = make_process()
    assert a.authenticate(alice, "old password").email == "alice@example.com"
    a.set_email(alice, "new@example.com")
    assert a.authenticate(alice, "old password").email == "new@example.com"


def test_the_server_puts_the_cache_in_front_of_any_backend(sqlite_url, redis_url):
    settings = parse_settings({"storage.sqluri": sqlite_url, "storage.create_tables": "true",
                               "auth.redis_url": redis_url,
                               "auth.credentials_cache_seconds": "60"}).auth
    auth = open_from_settings(AuthBackend, settings, cached=True)
    try:
        assert isinstance(auth, CachedAuth) and isinstance(auth.backend, SQLAuth)
        assert auth.versions is not None and auth.feed is not None
        assert auth.cache.seconds == 60
        assert auth.optional_dependencies()["credential_versions"]() is True
    finally:
        auth.close()
