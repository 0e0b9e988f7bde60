"""Hawk nonce caches: a signed request is accepted once, not replayed within the skew window.

A Hawk request is fresh when its ``ts`` is within the skew window of the
server's clock; inside that window the ``(token id, ts, nonce)`` triple must
not have been seen before (reference §2.5, SS-3). A triple must therefore be
remembered until ``ts + window``; after that its timestamp alone is refused.
Keys are SHA-256 digests of the triple, so no token id is stored.

- :class:`MemoryNonceCache`: one process; bounded (past ``max_entries`` the
  entries closest to expiry are dropped first, with a warning). With several
  worker processes a replay sent to another worker is not caught: use Redis.
- :class:`RedisNonceCache`: shared by every process and node; one
  ``SET key 1 NX EX ttl`` per request, which is atomic.

When Redis does not answer, :meth:`RedisNonceCache.seen_before` raises
:class:`NonceCacheUnavailable` (a :class:`~syncserver.errors.BackendUnavailable`,
which the application answers with 503 and ``Retry-After``). It does not
fall back to accepting requests unchecked: a replay check that silently
stops when Redis is down is a hole an attacker can open by overloading
Redis. Nor does it fall back to a per-process cache, which would forget
every nonce seen before the outage. Clients retry a 503 after the backoff.
"""

import hashlib
import heapq
import json
import logging
import threading
import time

from syncserver.errors import BackendUnavailable

logger = logging.getLogger("syncserver.web.nonces")

#: Default skew window (seconds) of the Hawk verifier, and so of the caches.
DEFAULT_WINDOW = 900
DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_REDIS_PREFIX = "syncserver:hawk-nonce:"
#: Between two "cache full" warnings of one memory cache.
_FULL_WARNING_SECONDS = 300


class NonceCacheUnavailable(BackendUnavailable):
    """The shared nonce cache (Redis) did not answer: refuse the request with 503."""

    service = "nonces"


class NonceCache:
    """Remembers Hawk ``(key id, ts, nonce)`` triples for ``window`` seconds past ``ts``."""

    def __init__(self, window=DEFAULT_WINDOW):
        if window <= 0:
            raise ValueError("the nonce window must be positive")
        self.window = window

    def seen_before(self, key_id, ts, nonce, now=None):
        """True when this triple was recorded before; otherwise record it, atomically.

        ``ts`` is the request's integer timestamp and ``now`` the server's
        clock (epoch seconds; default: now). Raises
        :class:`NonceCacheUnavailable` when the cache cannot answer.
        """
        raise NotImplementedError

    def close(self):
        """Release connections (no-op by default)."""


def nonce_key(key_id, ts, nonce):
    """An unambiguous, fixed-size digest of the triple (no token id in the cache)."""
    return hashlib.sha256(json.dumps([key_id, int(ts), nonce]).encode("utf-8")).hexdigest()


def _remember_until(ts, window):
    """Past ``ts + window`` the timestamp alone is refused as stale."""
    return int(ts) + window


class MemoryNonceCache(NonceCache):
    """An in-process cache with at most ``max_entries`` triples; thread-safe."""

    def __init__(self, window=DEFAULT_WINDOW, max_entries=DEFAULT_MAX_ENTRIES):
        super().__init__(window)
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._expiry = {}   # digest -> time after which it may be forgotten
        self._heap = []     # (expiry, digest), earliest first
        self._lock = threading.Lock()
        self._warned_at = None

    def __len__(self):
        return len(self._expiry)

    def seen_before(self, key_id, ts, nonce, now=None):
        now = time.time() if now is None else now
        digest = nonce_key(key_id, ts, nonce)
        until = _remember_until(ts, self.window)
        with self._lock:
            self._drop_expired(now)
            if digest in self._expiry:
                return True
            if until < now:
                return False  # already outside the window: nothing to remember
            if len(self._expiry) >= self.max_entries:
                self._evict_one(now)
            self._expiry[digest] = until
            heapq.heappush(self._heap, (until, digest))
            return False

    def _drop_expired(self, now):
        while self._heap and self._heap[0][0] < now:
            _, digest = heapq.heappop(self._heap)
            self._expiry.pop(digest, None)

    def _evict_one(self, now):
        """Full: forget the triple closest to expiry (the smallest replay opening)."""
        _, digest = heapq.heappop(self._heap)
        self._expiry.pop(digest, None)
        if self._warned_at is None or now - self._warned_at >= _FULL_WARNING_SECONDS:
            self._warned_at = now
            logger.warning("Hawk nonce cache full (%d entries): forgetting the oldest early; "
                           "raise its size or use Redis", self.max_entries)


class RedisNonceCache(NonceCache):
    """Triples in Redis under ``key_prefix``, each expiring when its timestamp goes stale."""

    def __init__(self, client, window=DEFAULT_WINDOW, key_prefix=DEFAULT_REDIS_PREFIX):
        super().__init__(window)
        self._client = client
        self.key_prefix = key_prefix

    @classmethod
    def from_url(cls, url, window=DEFAULT_WINDOW, key_prefix=DEFAULT_REDIS_PREFIX,
                 timeout=1.0):
        """Connect lazily (nothing is opened here); short timeouts: every request waits on it."""
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return cls(client, window=window, key_prefix=key_prefix)

    def seen_before(self, key_id, ts, nonce, now=None):
        import redis

        now = time.time() if now is None else now
        # At least 1 s: EX must be positive. A ts already stale is refused by
        # the verifier before it gets here; remembering it briefly is harmless.
        ttl = max(1, int(_remember_until(ts, self.window) - now) + 1)
        key = self.key_prefix + nonce_key(key_id, ts, nonce)
        try:
            created = self._client.set(key, b"1", nx=True, ex=ttl)
        except redis.RedisError as error:
            raise NonceCacheUnavailable(f"Hawk nonce cache (Redis): {error}") from None
        return not created

    def close(self):
        self._client.close()
