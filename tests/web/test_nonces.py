"""Hawk nonce caches: in-process and in a real Redis, including Redis killed and frozen."""

import contextlib
import logging
import os
import signal
import threading

import pytest
import redis

from syncserver.errors import BackendUnavailable
from syncserver.web.nonces import (
    MemoryNonceCache,
    NonceCacheUnavailable,
    RedisNonceCache,
    nonce_key,
)

TOKEN = "eyJ1aWQiOiA0Mn0-some-token-id"
NOW = 1_700_000_000
WINDOW = 900


@pytest.fixture(params=["memory", "redis"])
def cache(request):
    if request.param == "memory":
        yield MemoryNonceCache(window=WINDOW)
        return
    url = request.getfixturevalue("redis_url")
    redis_cache = RedisNonceCache.from_url(url, window=WINDOW, key_prefix="test:nonce:")
    yield redis_cache
    redis_cache.close()


@contextlib.contextmanager
def redis_restored(redis_server):
    """Always leave the session's redis-server running and not frozen."""
    try:
        yield
    finally:
        if redis_server.running:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        else:
            redis_server.start()


# -- behaviour shared by both caches --------------------------------------------------

def test_first_use_then_replay(cache):
    assert cache.seen_before(TOKEN, NOW, "abc", now=NOW) is False
    assert cache.seen_before(TOKEN, NOW, "abc", now=NOW + 1) is True
    assert cache.seen_before(TOKEN, NOW, "abc", now=NOW + WINDOW - 1) is True


def test_any_other_part_makes_it_new(cache):
    assert cache.seen_before(TOKEN, NOW, "abc", now=NOW) is False
    assert cache.seen_before(TOKEN, NOW + 1, "abc", now=NOW) is False
    assert cache.seen_before(TOKEN, NOW, "abd", now=NOW) is False
    assert cache.seen_before(TOKEN + "x", NOW, "abc", now=NOW) is False
    # No ambiguity between the parts: moving characters across them is another triple.
    assert cache.seen_before("a", NOW, "bc", now=NOW) is False
    assert cache.seen_before("ab", NOW, "c", now=NOW) is False


def test_concurrent_first_uses_admit_exactly_one(cache):
    results = []
    barrier = threading.Barrier(8)

    def use():
        barrier.wait()
        results.append(cache.seen_before(TOKEN, NOW, "race", now=NOW))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] + [True] * 7


def test_digest_keys_hold_no_token_id():
    assert TOKEN not in nonce_key(TOKEN, NOW, "abc")
    assert nonce_key("a", NOW, "bc") != nonce_key("ab", NOW, "c")
    assert len(nonce_key("x" * 5000, NOW, "n")) == 64


# -- in-process -----------------------------------------------------------------------

def test_memory_remembers_until_ts_plus_window_then_forgets():
    cache = MemoryNonceCache(window=WINDOW)
    ahead = NOW + WINDOW  # a client clock a full window ahead is still accepted
    assert cache.seen_before(TOKEN, ahead, "n", now=NOW) is False
    assert cache.seen_before(TOKEN, ahead, "n", now=ahead + WINDOW) is True
    cache.seen_before(TOKEN, NOW + 5000, "other", now=ahead + WINDOW + 1)  # triggers cleanup
    assert len(cache) == 1  # the first triple is gone, only the new one is left


def test_memory_is_bounded_and_drops_what_expires_first(caplog):
    cache = MemoryNonceCache(window=WINDOW, max_entries=3)
    caplog.set_level(logging.WARNING, logger="syncserver.web.nonces")
    for offset in (5, 1, 4, 2, 3):
        cache.seen_before(TOKEN, NOW + offset, "n", now=NOW)
    assert len(cache) == 3
    # Kept: the three that expire last (ts +5, +4, +3); +1 and +2 were dropped.
    assert cache.seen_before(TOKEN, NOW + 5, "n", now=NOW) is True
    assert cache.seen_before(TOKEN, NOW + 4, "n", now=NOW) is True
    assert cache.seen_before(TOKEN, NOW + 3, "n", now=NOW) is True
    warnings = [r for r in caplog.records if r.name == "syncserver.web.nonces"]
    assert len(warnings) == 1 and "full" in warnings[0].getMessage()


def test_memory_does_not_store_a_ts_already_stale():
    cache = MemoryNonceCache(window=WINDOW)
    assert cache.seen_before(TOKEN, NOW - 2 * WINDOW, "n", now=NOW) is False
    assert len(cache) == 0


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"window": -5}, {"max_entries": 0}])
def test_memory_settings_are_checked(kwargs):
    with pytest.raises(ValueError):
        MemoryNonceCache(**kwargs)


# -- Redis ----------------------------------------------------------------------------

def test_redis_keys_have_the_prefix_and_expire_when_the_ts_goes_stale(redis_url):
    cache = RedisNonceCache.from_url(redis_url, window=WINDOW, key_prefix="pfx:")
    client = redis.Redis.from_url(redis_url)
    try:
        cache.seen_before(TOKEN, NOW + 100, "n", now=NOW)
        keys = client.keys("*")
        assert keys == [f"pfx:{nonce_key(TOKEN, NOW + 100, 'n')}".encode()]
        assert TOKEN.encode() not in keys[0] and client.get(keys[0]) == b"1"
        assert WINDOW + 100 - 1 <= client.ttl(keys[0]) <= WINDOW + 100 + 1
        # A ts at the edge of the window still gets a positive lifetime.
        cache.seen_before(TOKEN, NOW - WINDOW, "edge", now=NOW)
        assert 0 < client.ttl(f"pfx:{nonce_key(TOKEN, NOW - WINDOW, 'edge')}") <= 1
    finally:
        cache.close()
        client.close()


def test_redis_is_shared_between_processes(redis_url):
    first = RedisNonceCache.from_url(redis_url, window=WINDOW)
    second = RedisNonceCache.from_url(redis_url, window=WINDOW)
    try:
        assert first.seen_before(TOKEN, NOW, "n", now=NOW) is False
        assert second.seen_before(TOKEN, NOW, "n", now=NOW) is True
    finally:
        first.close()
        second.close()


def test_redis_killed_raises_nonce_cache_unavailable_then_recovers(redis_url, redis_server):
    cache = RedisNonceCache.from_url(redis_url, window=WINDOW)
    try:
        assert cache.seen_before(TOKEN, NOW, "before", now=NOW) is False
        with redis_restored(redis_server):
            redis_server.stop()
            with pytest.raises(NonceCacheUnavailable) as caught:
                cache.seen_before(TOKEN, NOW, "during", now=NOW)
            # The application answers every BackendUnavailable with 503 + Retry-After.
            assert isinstance(caught.value, BackendUnavailable)
            assert caught.value.service == "nonces"
            assert TOKEN not in str(caught.value)
        # Back (empty, as after a crash): the cache works again, without a restart of ours.
        assert cache.seen_before(TOKEN, NOW, "after", now=NOW) is False
        assert cache.seen_before(TOKEN, NOW, "after", now=NOW) is True
    finally:
        cache.close()


def test_redis_frozen_times_out_as_unavailable(redis_url, redis_server):
    cache = RedisNonceCache.from_url(redis_url, window=WINDOW, timeout=0.3)
    try:
        cache.seen_before(TOKEN, NOW, "warm-up", now=NOW)
        with redis_restored(redis_server):
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            with pytest.raises(NonceCacheUnavailable):
                cache.seen_before(TOKEN, NOW, "frozen", now=NOW)
    finally:
        cache.close()
