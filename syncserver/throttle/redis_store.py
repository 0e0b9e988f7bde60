"""Failure counters in Redis (``throttle.redis_url``).

Each counter is a hash ``syncserver:throttle:<key>`` with ``hits``,
``updated_at`` and ``expires_at``; one Lua script increments it atomically
(restarting an expired counter from 1) and sets a Redis TTL so that Redis
itself drops old counters. Expiry is decided on ``expires_at``, against the
throttle's clock, not on the TTL alone.
"""

import redis

from syncserver.throttle import Counter, CounterStore, ThrottleStoreUnavailable

PREFIX = "syncserver:throttle:"

_INCREMENT = """
local now = tonumber(ARGV[1])
local lifetime = tonumber(ARGV[2])
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '0')
local hits = 1
if expires > now then
  hits = tonumber(redis.call('HGET', KEYS[1], 'hits') or '0') + 1
end
redis.call('HSET', KEYS[1], 'hits', hits, 'updated_at', now, 'expires_at', now + lifetime)
redis.call('EXPIRE', KEYS[1], lifetime + 60)
return hits
"""


class RedisCounterStore(CounterStore):
    """:class:`~syncserver.throttle.CounterStore` in Redis; see the module docstring."""

    def __init__(self, client):
        self._client = client
        self._increment = client.register_script(_INCREMENT)

    @classmethod
    def from_url(cls, url):
        # Short timeouts: the throttle sits in front of every login.
        return cls(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1))

    def increment(self, key, now, lifetime):
        try:
            hits = self._increment(keys=[PREFIX + key], args=[now, lifetime])
        except redis.RedisError as error:
            raise ThrottleStoreUnavailable(f"Redis: {error}") from None
        return Counter(hits=int(hits), updated_at=now)

    def read(self, keys, now):
        keys = list(keys)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(PREFIX + key, "hits", "updated_at", "expires_at")
                answers = pipe.execute()
        except redis.RedisError as error:
            raise ThrottleStoreUnavailable(f"Redis: {error}") from None
        found = {}
        for key, (hits, updated_at, expires_at) in zip(keys, answers, strict=True):
            if hits is not None and expires_at is not None and int(expires_at) > now:
                found[key] = Counter(hits=int(hits), updated_at=int(updated_at))
        return found

    def delete(self, key):
        try:
            self._client.delete(PREFIX + key)
        except redis.RedisError as error:
            raise ThrottleStoreUnavailable(f"Redis: {error}") from None

    def close(self):
        self._client.close()
