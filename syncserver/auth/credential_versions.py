"""A per-user version of the credentials in Redis, read on every authenticated request.

Why: a login remembered by one process (:mod:`syncserver.auth.credentials_cache`)
must stop working everywhere the moment its password changes, or its account
is disabled or deleted, not a poll interval later. With Redis configured
(``auth.redis_url``), the process making the change writes a fresh random
version under ``<prefix>credentials:<username>``; every process stores the
version it read *before* verifying a password next to the remembered login,
and serves that login from memory only while Redis still holds the same
version. Reading the version first means a verification that raced with the
change is remembered under the old version and so never trusted again.

Versions are random strings, not counters: a Redis that restarted empty (or
let a key expire) answers "no version", which differs from every version a
change wrote, so stale logins are re-checked rather than trusted. A key
lives long after any remembered login could (:func:`key_lifetime`).

Redis errors propagate as :class:`CredentialVersionsUnavailable`; the caller
(:class:`~syncserver.auth.cached.CachedAuth`) decides what a login is worth
then.
"""

import secrets

#: Version of a user whose credentials never changed since Redis last knew them.
NO_VERSION = ""


class CredentialVersionsUnavailable(Exception):
    """Redis did not answer (refused, timed out, any error)."""


def key_lifetime(cache_seconds):
    """Seconds a version key lives: longer than any login can stay remembered."""
    return max(3600, 2 * cache_seconds + 60)


class CredentialVersions:
    """Per-user credential versions in Redis; thread-safe (redis-py's pool is)."""

    def __init__(self, client, cache_seconds, key_prefix="syncserver:", description="Redis"):
        self.client = client
        self.lifetime = key_lifetime(cache_seconds)
        self.prefix = key_prefix + "credentials:"
        self.description = description

    @classmethod
    def from_url(cls, url, cache_seconds, key_prefix="syncserver:", timeout=1.0):
        """A client of its own for ``url`` (short timeouts, no retries inside redis-py)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(url, socket_timeout=timeout,
                                      socket_connect_timeout=timeout, decode_responses=True,
                                      retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        kwargs = client.connection_pool.connection_kwargs
        description = "Redis at {}:{}/{}".format(
            kwargs.get("host", kwargs.get("path", "?")), kwargs.get("port", ""),
            kwargs.get("db", 0))
        return cls(client, cache_seconds, key_prefix, description)

    def current(self, username):
        """The user's version now (:data:`NO_VERSION` when none is known)."""
        try:
            value = self.client.get(self.prefix + username)
        except Exception as error:  # redis-py raises RedisError and OSError subclasses
            raise CredentialVersionsUnavailable(f"{self.description}: {error}") from error
        return value or NO_VERSION

    def change(self, username):
        """Give the user a new version: every remembered login of theirs stops counting."""
        try:
            self.client.set(self.prefix + username, secrets.token_hex(16), ex=self.lifetime)
        except Exception as error:
            raise CredentialVersionsUnavailable(f"{self.description}: {error}") from error

    def is_healthy(self):
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def close(self):
        self.client.close()
