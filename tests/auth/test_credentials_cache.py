"""The per-process credentials cache."""

import threading

import pytest

from syncserver.auth.credentials_cache import CredentialsCache


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def cache(clock):
    return CredentialsCache(300, b"secret", clock=clock)


def test_remembers_exact_credentials(cache):
    assert not cache.is_known("alice", "pw", "hash1")
    cache.remember("alice", "pw", "hash1")
    assert cache.is_known("alice", "pw", "hash1")
    assert not cache.is_known("alice", "pw2", "hash1")
    assert not cache.is_known("alice", "pw", "hash2")   # the stored hash changed
    assert not cache.is_known("bob", "pw", "hash1")
    assert not cache.is_known("alice", "PW", "hash1")
    assert not cache.is_known("Alice", "pw", "hash1")


def test_parts_cannot_be_shifted(cache):
    cache.remember("alice", "pw\x00x", "h")
    assert not cache.is_known("alice", "pw", "x\x00h")
    assert not cache.is_known("alice", "pw\x00", "xh")


def test_entries_expire(cache, clock):
    cache.remember("alice", "pw", "h")
    clock.now += 299
    assert cache.is_known("alice", "pw", "h")
    clock.now += 1
    assert not cache.is_known("alice", "pw", "h")
    assert len(cache) == 0


def test_a_hit_does_not_extend_the_lifetime(cache, clock):
    cache.remember("alice", "pw", "h")
    for _ in range(5):
        clock.now += 100
        cache.is_known("alice", "pw", "h")
    assert not cache.is_known("alice", "pw", "h")


def test_zero_seconds_disables_it(clock):
    cache = CredentialsCache(0, None, clock=clock)
    assert not cache.enabled
    cache.remember("alice", "pw", "h")
    assert not cache.is_known("alice", "pw", "h")
    assert len(cache) == 0


def test_forget_user_drops_only_that_user(cache):
    cache.remember("alice", "pw1", "h")
    cache.remember("alice", "pw2", "h2")
    cache.remember("bob", "pw1", "h")
    cache.forget_user("alice")
    assert not cache.is_known("alice", "pw1", "h")
    assert not cache.is_known("alice", "pw2", "h2")
    assert cache.is_known("bob", "pw1", "h")
    cache.forget_user("nobody")
    assert len(cache) == 1


def test_clear(cache):
    cache.remember("alice", "pw", "h")
    cache.remember("bob", "pw", "h")
    cache.clear()
    assert len(cache) == 0
    assert not cache.is_known("alice", "pw", "h")


def test_bounded_least_recently_used_goes_first(clock):
    cache = CredentialsCache(300, b"k", max_entries=3, clock=clock)
    for name in ("a", "b", "c"):
        cache.remember(name, "pw", "h")
    assert cache.is_known("a", "pw", "h")  # a is now the most recently used
    cache.remember("d", "pw", "h")
    assert len(cache) == 3
    assert not cache.is_known("b", "pw", "h")
    assert cache.is_known("a", "pw", "h")
    assert cache.is_known("c", "pw", "h")
    assert cache.is_known("d", "pw", "h")
    # The evicted entry is gone from the per-user index as well.
    assert "b" not in cache._by_user


def test_stale_entries_are_dropped_on_insert(cache, clock):
    cache.remember("a", "pw", "h")
    clock.now += 400
    cache.remember("b", "pw", "h")
    assert len(cache) == 1


def test_the_cache_never_holds_a_password(cache):
    password = "very-secret-password-☃"
    cache.remember("alice", password, "$argon2id$fingerprint")
    dump = repr(vars(cache)) + repr(list(cache._entries.items())) + repr(cache._by_user)
    assert password not in dump
    assert password.encode("utf-8") not in b"".join(cache._entries)
    assert "fingerprint" not in dump


def test_keys_depend_on_the_secret(clock):
    one = CredentialsCache(300, b"one", clock=clock)
    two = CredentialsCache(300, "two", clock=clock)
    same = CredentialsCache(300, b"one", clock=clock)
    assert one._key("a", "pw", "h") != two._key("a", "pw", "h")
    assert one._key("a", "pw", "h") == same._key("a", "pw", "h")
    # Without a configured secret, each process (instance) draws its own.
    assert (CredentialsCache(300, None)._key("a", "pw", "h")
            != CredentialsCache(300, "")._key("a", "pw", "h"))


def test_odd_passwords_are_fine(cache):
    for password in ("", "\udc80 lone surrogate", "a:b", "\n\t ", "☃" * 1000):
        cache.remember("alice", password, "h")
        assert cache.is_known("alice", password, "h")


def test_bad_arguments():
    with pytest.raises(ValueError):
        CredentialsCache(-1)
    with pytest.raises(ValueError):
        CredentialsCache(10, max_entries=0)


def test_thread_safety():
    cache = CredentialsCache(300, b"k", max_entries=50)
    errors = []
    start = threading.Barrier(8)

    def work(worker):
        try:
            start.wait()
            for i in range(2000):
                user = f"user{(worker + i) % 20}"
                cache.remember(user, f"pw{i % 7}", "h")
                cache.is_known(user, f"pw{i % 7}", "h")
                if i % 50 == 0:
                    cache.forget_user(user)
                if i % 500 == 0:
                    cache.clear()
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache) <= 50
    indexed = set().union(*cache._by_user.values()) if cache._by_user else set()
    assert indexed == set(cache._entries)
