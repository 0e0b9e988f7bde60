"""A Redis cache in front of any storage backend (``storage.backend = redis``).

It caches what every sync reads first: a user's collection timestamps
(info/collections and the ``X-If-Unmodified-Since`` pre-check), the
storage timestamp (Sync 1.5's ``X-Last-Modified`` of info/*), collection
counts, usage, total usage and the user's own quota (info/quota),
``meta/global`` and the ``tabs`` collection. The quota of a write is checked
by the wrapped backend inside the write itself (``quota_kb`` is passed on),
so writes read nothing from the cache. Everything else goes straight to the wrapped backend
(``storage.wrapped_backend``), which stays the only truth: it holds every
record, tabs included, and checks ``X-If-Unmodified-Since`` inside its own
write transaction, so of racing writers exactly one wins with or without Redis.

Why a cached answer is always the database's answer (with a reachable Redis):

- A write marks itself "in progress" in Redis (:data:`BEGIN_WRITE`), runs in
  the wrapped backend, then, before the response, drops the user's cached
  answers, raises the user's generation and removes its mark, in one script.
- A reader answers from the cache only when no write of the user is in
  progress. On a miss it reads the namespace and generation first, then the
  database, and stores its result only if, at that moment, no write is in
  progress and the generation has not moved (one script). A result read before
  a write committed can therefore never be stored after that write began.
- Answers that change with time alone (an item expiring hides it from counts,
  usage and reads) are kept only until the next expiry among the items
  concerned, as :meth:`StorageBackend.get_next_expiry` tells.
- Batch uploads: creating a batch and staging items in it change nothing a
  reader sees, so they go straight to the wrapped backend; a commit (like
  ``delete_collection``, ``delete_storage`` and ``delete_user``) is a write.

When Redis fails (refused, timed out, any error), the request is answered from
the wrapped backend, one warning is logged per ``storage.redis_retry_seconds``,
and Redis is left alone for that long. Users written while their cache could
not be updated are remembered; before this process trusts Redis again (and
from a timer, so that other processes need not wait for our next request) it
drops their cached answers, or the whole namespace if there are many. A Redis
that restarts, empty or with its old data reloaded, is detected by every
process through its forgotten scripts, and the whole cache is dropped.
docs/redis.rst says what this does not cover.
"""

import dataclasses
import json
import logging
import threading
import time
import uuid

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from syncserver import metrics
from syncserver.errors import ConfigError
from syncserver.storage import ItemQuery, RecordStream, StorageBackend
from syncserver.storage.redis_scripts import CacheScripts

logger = logging.getLogger("syncserver.storage.redis")

#: A write's "in progress" mark stops counting after this long, should its
#: process die before removing it (the user's cache is bypassed until then).
WRITE_MARK_SECONDS = 300
#: Answers larger than this (a huge tabs collection) are not cached.
MAX_CACHED_BYTES = 1024 * 1024
#: Past this many users to invalidate after an outage, the whole cache is dropped.
MAX_USERS_TO_INVALIDATE = 200
#: ``storage.redis_cache_seconds`` must exceed any database read by far (see STORE).
MIN_CACHE_SECONDS = 60
#: The one meta item clients read on every sync.
META_GLOBAL = ("meta", "global")
TABS = "tabs"
#: The ItemQuery fields that the cached tabs can answer exactly.
_TABS_FILTERS = ("ids", "newer", "older")

_UNAVAILABLE = object()


@dataclasses.dataclass(frozen=True)
class RedisCacheSettings:
    """``storage.*`` keys of the Redis cache (``storage.backend = redis``)."""

    #: The Redis server, e.g. ``redis://127.0.0.1:6379/0``.
    redis_url: str | None = None
    #: Seconds a Redis command may take before the request falls back to the database.
    redis_timeout: float = 1.0
    redis_key_prefix: str | None = "syncserver:"
    #: After a Redis failure: seconds before Redis is tried again (and between warnings).
    redis_retry_seconds: int = 10
    #: How long a user's cached answers live in Redis without being read or written.
    redis_cache_seconds: int = 86400


class RedisCachedStorage(StorageBackend):
    """The wrapped backend's data, with the reads of every sync answered from Redis."""

    def __init__(self, wrapped, client, key_prefix="syncserver:", retry_seconds=10,
                 cache_seconds=86400, description="Redis"):
        self.wrapped = wrapped
        self.client = client
        self._scripts = CacheScripts(client, key_prefix)
        self._cache_ms = str(cache_seconds * 1000)
        self._retry_seconds = retry_seconds
        self._description = description
        self._expiry_known = True
        self._lock = threading.Lock()
        self._recovering = threading.Lock()
        self._down_until = 0.0
        self._last_warning = None
        #: user id -> tokens of writes whose end Redis has not seen.
        self._unsynced = {}
        self._timer = None
        self._closed = False

    #: ``storage.redis_*``: the cache's own keys.
    settings_class = RedisCacheSettings

    @classmethod
    def from_settings(cls, settings):
        return cls.open(settings, None)

    @classmethod
    def open(cls, settings, databases):
        """The wrapped backend (``storage.wrapped_backend``) built as the server builds it."""
        wrapped_class = settings.wrapped_backend
        cache = settings.backend_settings or RedisCacheSettings()
        if wrapped_class is None:
            raise ConfigError("storage.wrapped_backend is required with storage.backend = redis "
                              "(the backend that keeps the data, for example 'sql').")
        if issubclass(wrapped_class, RedisCachedStorage):
            raise ConfigError("storage.wrapped_backend must name the backend that keeps the data, "
                              "not the Redis cache itself.")
        if not cache.redis_url:
            raise ConfigError("storage.redis_url is required with storage.backend = redis "
                              "(for example redis://127.0.0.1:6379/0).")
        if cache.redis_cache_seconds < MIN_CACHE_SECONDS:
            raise ConfigError(f"storage.redis_cache_seconds must be at least {MIN_CACHE_SECONDS}.")
        if cache.redis_timeout <= 0:
            raise ConfigError("storage.redis_timeout must be more than 0 seconds.")
        try:
            # No retries inside redis-py: a failure must reach us to be accounted for.
            client = redis.Redis.from_url(
                cache.redis_url, socket_timeout=cache.redis_timeout,
                socket_connect_timeout=cache.redis_timeout, decode_responses=True,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        except ValueError as error:
            raise ConfigError(f"storage.redis_url is not a usable Redis URL: {error}") from None
        kwargs = client.connection_pool.connection_kwargs
        description = "Redis at {}:{}/{}".format(
            kwargs.get("host", kwargs.get("path", "?")), kwargs.get("port", ""),
            kwargs.get("db", 0))
        wrapped_settings = dataclasses.replace(
            settings, backend=wrapped_class, wrapped_backend=None,
            backend_settings=settings.wrapped_backend_settings, wrapped_backend_settings=None)
        if databases is None or not issubclass(wrapped_class, StorageBackend):
            wrapped = wrapped_class.from_settings(wrapped_settings)
        else:
            wrapped = wrapped_class.open(wrapped_settings, databases)
        return cls(wrapped, client, key_prefix=cache.redis_key_prefix or "",
                   retry_seconds=cache.redis_retry_seconds,
                   cache_seconds=cache.redis_cache_seconds, description=description)

    def close(self):
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        self.client.close()
        self.wrapped.close()

    def is_healthy(self):
        # Redis down is not an outage: every answer still comes from the database.
        return self.wrapped.is_healthy()

    def optional_dependencies(self):
        return {"storage_cache": self._redis_answers, **self.wrapped.optional_dependencies()}

    def _redis_answers(self):
        """True when Redis answers a PING (whatever the pause after a failure says)."""
        try:
            return bool(self.client.ping())
        except RedisError:
            return False

    # -- cached reads ---------------------------------------------------------

    def get_storage_timestamp(self, user_id):
        return self._cached(user_id, "storage_stamp",
                            lambda: self.wrapped.get_storage_timestamp(user_id))

    def get_collection_timestamps(self, user_id):
        return self._cached(user_id, "stamps",
                            lambda: self.wrapped.get_collection_timestamps(user_id))

    def get_collection_timestamp(self, user_id, collection):
        return self.get_collection_timestamps(user_id).get(collection)

    def get_collection_counts(self, user_id):
        return self._cached(user_id, "counts",
                            lambda: self.wrapped.get_collection_counts(user_id), expiry=())

    def get_collection_usage(self, user_id):
        return self._cached(user_id, "usage",
                            lambda: self.wrapped.get_collection_usage(user_id), expiry=())

    def get_total_usage(self, user_id):
        return self._cached(user_id, "total",
                            lambda: self.wrapped.get_total_usage(user_id), expiry=())

    def get_item(self, user_id, collection, item_id):
        if (collection, item_id) == META_GLOBAL:
            return self._cached(user_id, "meta",
                                lambda: self.wrapped.get_item(user_id, *META_GLOBAL),
                                expiry=(collection,))
        return self.wrapped.get_item(user_id, collection, item_id)

    def get_items(self, user_id, collection, query, full):
        if collection != TABS or not _answerable_from_all_records(query):
            return self.wrapped.get_items(user_id, collection, query, full)
        records = self._cached(user_id, "tabs",
                               lambda: self.wrapped.get_items(user_id, TABS, ItemQuery(), True),
                               expiry=(TABS,))
        return _select(records, query, full)

    def stream_items(self, user_id, collection, query, full):
        if collection == TABS and _answerable_from_all_records(query):
            return RecordStream.of(self.get_items(user_id, collection, query, full))
        return self.wrapped.stream_items(user_id, collection, query, full)

    def get_next_expiry(self, user_id, collection=None):
        return self.wrapped.get_next_expiry(user_id, collection)

    def _cached(self, user_id, field, read, expiry=None):
        """The cached answer ``field`` of the user, or ``read()``'s, stored when still current.

        ``expiry``: None for answers that time does not change; else the
        arguments after ``user_id`` of ``get_next_expiry`` that bound the answer.
        """
        if expiry is not None and not self._expiry_known:
            metrics.recorder.cache_miss(field)
            return read()
        snapshot = self._redis("read", user_id, self._cache_ms, field)
        if snapshot is _UNAVAILABLE:
            metrics.recorder.cache_miss(field)
            return read()
        namespace, generation, writes_in_progress, cached = snapshot
        if int(writes_in_progress):
            metrics.recorder.cache_miss(field)
            return read()
        if cached is not None:
            horizon, value = json.loads(cached)
            if horizon is None or time.time() < horizon:
                metrics.recorder.cache_hit(field)
                return value
        metrics.recorder.cache_miss(field)
        horizon = None
        if expiry is not None:
            # Before the read: an item expiring in between must bound the answer.
            try:
                horizon = self.wrapped.get_next_expiry(user_id, *expiry)
            except NotImplementedError:
                self._expiry_known = False
                return read()
        value = read()
        if horizon is None or time.time() < horizon:
            encoded = json.dumps([horizon, value], separators=(",", ":"))
            if len(encoded) <= MAX_CACHED_BYTES:
                self._redis("store", user_id, namespace, generation, self._cache_ms,
                            field, encoded)
        return value

    # -- writes: each one through _write ------------------------------------------

    def set_items(self, user_id, collection, items, now, if_unmodified_since=None,
                  quota_kb=None, **options):
        return self._write(user_id, lambda: self.wrapped.set_items(
            user_id, collection, items, now, if_unmodified_since=if_unmodified_since,
            quota_kb=quota_kb, **options))

    def check_quota(self, user_id, quota_kb):
        # Only for writes refused before reaching the backend: rare, not cached.
        return self.wrapped.check_quota(user_id, quota_kb)

    def delete_item(self, user_id, collection, item_id, now, if_unmodified_since=None,
                    **options):
        return self._write(user_id, lambda: self.wrapped.delete_item(
            user_id, collection, item_id, now, if_unmodified_since=if_unmodified_since,
            **options))

    def delete_items(self, user_id, collection, query, now, if_unmodified_since=None,
                     **options):
        return self._write(user_id, lambda: self.wrapped.delete_items(
            user_id, collection, query, now, if_unmodified_since=if_unmodified_since,
            **options))

    def delete_collection(self, user_id, collection, now, if_unmodified_since=None):
        return self._write(user_id, lambda: self.wrapped.delete_collection(
            user_id, collection, now, if_unmodified_since=if_unmodified_since))

    def delete_storage(self, user_id, now, if_unmodified_since=None):
        return self._write(user_id, lambda: self.wrapped.delete_storage(
            user_id, now, if_unmodified_since=if_unmodified_since))

    def delete_user(self, user_id):
        return self._write(user_id, lambda: self.wrapped.delete_user(user_id))

    # -- batches: staging changes nothing a reader sees; the commit is a write ----

    def create_batch(self, user_id, collection, now, lifetime_seconds):
        return self.wrapped.create_batch(user_id, collection, now, lifetime_seconds)

    def append_to_batch(self, user_id, collection, batch_id, items, now, **options):
        return self.wrapped.append_to_batch(user_id, collection, batch_id, items, now,
                                            **options)

    def commit_batch(self, user_id, collection, batch_id, items, now, **options):
        return self._write(user_id, lambda: self.wrapped.commit_batch(
            user_id, collection, batch_id, items, now, **options))

    def export_records(self, user_id, collection):
        return self.wrapped.export_records(user_id, collection)

    def restore_records(self, user_id, collection, records, timestamp):
        return self._write(user_id, lambda: self.wrapped.restore_records(
            user_id, collection, records, timestamp))

    def purge_expired(self, now_seconds, batch_size=1000):
        # Expired items are already invisible to every cached answer, and the
        # usage total it changes is never cached: nothing to drop.
        return self.wrapped.purge_expired(now_seconds, batch_size)

    def reclaim_space(self, full=False):
        return self.wrapped.reclaim_space(full)

    # -- administration: straight through (tests/storage/test_redis_storage.py
    # checks that every method of the interface is passed on) ------------------

    def get_user_quota(self, user_id):
        # info/quota; set_user_quota goes through _write, which drops it.
        return self._cached(user_id, "quota", lambda: self.wrapped.get_user_quota(user_id))

    def set_user_quota(self, user_id, quota_kb):
        return self._write(user_id, lambda: self.wrapped.set_user_quota(user_id, quota_kb))

    def count_expired(self, now_seconds):
        return self.wrapped.count_expired(now_seconds)

    def get_statistics(self, now_seconds):
        return self.wrapped.get_statistics(now_seconds)

    def _write(self, user_id, write):
        """Run ``write()`` (a change of the user's data) so that no process reads a stale cache.

        Every write of the interface goes through here; a new write method is
        one line calling it.
        """
        token = uuid.uuid4().hex
        self._redis("begin_write", user_id, token, WRITE_MARK_SECONDS)
        try:
            return write()
        finally:
            # Even after an error: the database may have committed before failing.
            if self._redis("invalidate", self._cache_ms, user_id, token) is _UNAVAILABLE:
                self._remember_unsynced(user_id, token)

    # -- Redis failures -----------------------------------------------------------

    def _redis(self, script, *args):
        """Run a cache script, or return _UNAVAILABLE when Redis must not be used now."""
        if not self._usable():
            return _UNAVAILABLE
        try:
            return self._scripts.run(script, *args)
        except RedisError as error:
            self._failed(error)
            return _UNAVAILABLE

    def _usable(self):
        """True when Redis may be used: not in its retry pause, and owed nothing."""
        if time.monotonic() < self._down_until:
            return False
        if not self._unsynced:
            return True
        return self._recover()

    def _recover(self):
        """Drop the cached answers of the users written behind Redis's back; True when done."""
        if not self._recovering.acquire(blocking=False):
            return False  # another thread is at it: use the database meanwhile
        try:
            with self._lock:
                owed = {user: set(tokens) for user, tokens in self._unsynced.items()}
            if not owed:
                return True
            try:
                if len(owed) > MAX_USERS_TO_INVALIDATE:
                    # Their marks are left to lapse (WRITE_MARK_SECONDS).
                    self._scripts.run("new_namespace")
                else:
                    self._scripts.run("invalidate", self._cache_ms, *_pairs(owed))
            except RedisError as error:
                self._failed(error)
                return False
            with self._lock:
                for user, tokens in owed.items():
                    left = self._unsynced.get(user, set()) - tokens
                    if left:
                        self._unsynced[user] = left
                    else:
                        self._unsynced.pop(user, None)
            logger.warning("%s is reachable again: the cache of %d user(s) written meanwhile "
                           "was dropped; using the cache again", self._description, len(owed))
            return not self._unsynced
        finally:
            self._recovering.release()

    def _failed(self, error):
        """Stop using Redis for a while; warn once per interval."""
        metrics.recorder.backend_unavailable("storage_cache")
        now = time.monotonic()
        with self._lock:
            self._down_until = now + self._retry_seconds
            warn = self._last_warning is None or now - self._last_warning >= self._retry_seconds
            if warn:
                self._last_warning = now
        if warn:
            logger.warning("%s failed (%s: %s): answering from the database, "
                           "next try in %d s", self._description, type(error).__name__,
                           error, self._retry_seconds)

    def _remember_unsynced(self, user_id, token):
        with self._lock:
            self._unsynced.setdefault(user_id, set()).add(token)
            if self._timer is None and not self._closed:
                self._schedule_recovery()

    def _schedule_recovery(self):
        """A timer retries the recovery, so that it does not wait for our next request."""
        self._timer = threading.Timer(self._retry_seconds, self._recover_from_timer)
        self._timer.daemon = True
        self._timer.start()

    def _recover_from_timer(self):
        if time.monotonic() >= self._down_until:
            self._recover()
        with self._lock:
            self._timer = None
            if self._unsynced and not self._closed:
                self._schedule_recovery()


def _pairs(owed):
    """``user, token, user, token, ...`` for INVALIDATE."""
    return [value for user, tokens in owed.items() for token in tokens
            for value in (user, token)]


def _answerable_from_all_records(query):
    """True when ``query`` keeps a subset of the records in no particular order, no paging."""
    return (query.sort is None and query.limit is None and not query.offset
            and not any(getattr(query, field.name) is not None
                        for field in dataclasses.fields(query)
                        if field.name not in _TABS_FILTERS + ("sort", "limit", "offset")))


def _select(records, query, full):
    """What the database would answer for ``query`` from all the live full records."""
    ids = set(query.ids) if query.ids is not None else None
    selected = []
    for record in records:
        modified = record.get("modified")
        if ids is not None and record["id"] not in ids:
            continue
        if query.newer is not None and (modified is None or modified <= query.newer):
            continue
        if query.older is not None and (modified is None or modified >= query.older):
            continue
        selected.append(record if full else {"id": record["id"]})
    return selected
