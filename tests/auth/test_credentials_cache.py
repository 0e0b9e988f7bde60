"""The per-process memory of verified credentials."""

import threading

import pytest

from syncserver.auth.credentials_cache import CredentialsCache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cache(clock):
    return CredentialsCache(60, secret=b"k" * 32, clock=clock)


def test_remembers_exact_credentials(cache):
    assert cache.lookup("alice", "pw") is None
    cache.remember("alice", "pw", "user-a")
    assert cache.lookup("alice", "pw") == "user-a"
    assert cache.lookup("alice", "pw2") is None
    assert cache.lookup("alicE", "pw") is None
    assert cache.lookup("bob", "pw") is None


def test_fields_cannot_be_shifted(cache):
    cache.remember("ab", "c", 1)
    assert cache.lookup("a", "bc") is None
    cache.remember("a\x00b", "c", 2)
    assert cache.lookup("a", "b\x00c") is None


def test_entries_expire(cache, clock):
    cache.remember("alice", "pw", 1)
    clock.now += 59
    assert cache.lookup("alice", "pw") == 1
    clock.now += 2
    assert cache.lookup("alice", "pw") is None
    assert len(cache) == 0


def test_forget_user_drops_every_entry_of_that_user_only(cache):
    cache.remember("alice", "pw1", 1)
    cache.remember("alice", "pw2", 2)
    cache.remember("bob", "pw", 3)
    cache.forget_user("alice")
    assert cache.lookup("alice", "pw1") is None and cache.lookup("alice", "pw2") is None
    assert cache.lookup("bob", "pw") == 3
    cache.forget_user("nobody")


def test_bounded_least_recently_used_first(clock):
    cache = CredentialsCache(60, clock=clock, max_entries=2)
    cache.remember("a", "pw", 1)
    cache.remember("b", "pw", 2)
    assert cache.lookup("a", "pw") == 1  # a is now the most recently used
    cache.remember("c", "pw", 3)
    assert cache.lookup("b", "pw") is None
    assert cache.lookup("a", "pw") == 1 and cache.lookup("c", "pw") == 3
    assert len(cache) == 2


def test_zero_seconds_disables(clock):
    cache = CredentialsCache(0, clock=clock)
    assert not cache.enabled
    cache.remember("a", "pw", 1)
    assert cache.lookup("a", "pw") is None and len(cache) == 0


def test_keys_hold_no_password(cache):
    cache.remember("alice", "hunter2-secret", 1)
    stored = repr(cache._entries) + repr(cache._by_user)
    assert "hunter2" not in stored


def test_secrets_differ_per_instance_unless_configured(clock):
    first, second = CredentialsCache(60), CredentialsCache(60)
    assert first._key("a", "b") != second._key("a", "b")
    assert CredentialsCache(60, "s")._key("a", "b") == CredentialsCache(60, b"s")._key("a", "b")


def test_thread_safe(cache):
    errors = []

    def worker(n):
        try:
            for i in range(300):
                cache.remember(f"user{n}", f"pw{i % 7}", i)
                cache.lookup(f"user{n}", f"pw{i % 5}")
                if i % 50 == 0:
                    cache.forget_user(f"user{(n + 1) % 4}")
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
