"""Counting failed attempts (logins, reset codes) and refusing a key that failed too often.

A :class:`Throttle` keeps one counter per ``(scope, key)``, e.g.
``("login-pair", "alice|203.0.113.7")`` or ``("reset-code", "alice")``, in a
:class:`CounterStore` that every process shares (Redis or a SQL table), and
a :class:`Policy` per scope says what the count means:

- fewer than ``delay_after`` failures: nothing happens;
- from ``delay_after`` on: the key must wait 1, 2, 4, ... seconds (at most
  ``max_delay_seconds``) after its last failure before it may try again;
- from ``max_failures`` on: it must wait ``lockout_seconds``.

A counter is forgotten ``window_seconds`` after its last failure.

Waiting is a refusal with ``Retry-After``, never a ``sleep``: a sleeping
request holds a worker thread, so an attacker with a few connections would
starve the real users of threads. A refusal costs one lookup.

Reads are cached per process for ``cache_seconds`` (clean keys too, so a
sync client's burst of requests costs one lookup), while every failure is
written to the store at once and answers the shared count. So a process
can let at most one attempt through on a stale view before it learns the
key is blocked.

If the store cannot be reached the throttle **fails open** (logs a warning,
at most once a minute, and lets the attempt be checked normally): an outage
of Redis must not lock every user out, and the slow password hash still
bounds the guessing rate. It retries the store after ``STORE_RETRY_SECONDS``.
"""

import abc
import collections
import dataclasses
import logging
import threading
import time

from syncserver import metrics
from syncserver.errors import BackendUnavailable

security_log = logging.getLogger("syncserver.security")

#: After a store failure, how long the throttle stays open before trying the store again.
STORE_RETRY_SECONDS = 5
#: Per-process memory of counters, bounded (least recently used go first).
MAX_CACHED_KEYS = 10_000


class ThrottleStoreUnavailable(BackendUnavailable):
    """The counter store (Redis, the database) did not answer."""

    service = "throttle"


@dataclasses.dataclass(frozen=True)
class Counter:
    """A key's failures: how many, and when the last one was recorded (epoch seconds)."""

    hits: int
    updated_at: int


class CounterStore(abc.ABC):
    """Shared counters with an expiry: what a :class:`Throttle` needs from Redis or SQL.

    Every method may raise :class:`ThrottleStoreUnavailable`.
    """

    @abc.abstractmethod
    def increment(self, key, now, lifetime):
        """Add one to ``key`` atomically and return its :class:`Counter`.

        A counter that expired (``lifetime`` seconds after its last increment)
        starts again from 1.
        """

    @abc.abstractmethod
    def read(self, keys, now):
        """``{key: Counter}`` for the keys that exist and have not expired."""

    @abc.abstractmethod
    def delete(self, key):
        """Forget ``key``."""

    def is_healthy(self):
        """True when the store answers a read (the heartbeat's check); never raises."""
        try:
            self.read(["heartbeat:probe"], int(time.time()))
        except ThrottleStoreUnavailable:
            return False
        return True

    def close(self):
        """Release connections."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """What a scope's failure count means; see the module docstring."""

    max_failures: int
    lockout_seconds: int
    window_seconds: int
    delay_after: int | None = None
    max_delay_seconds: int = 30

    def wait(self, counter, now):
        """Seconds ``counter``'s key must still wait at ``now`` (0: it may try)."""
        if counter is None:
            return 0
        hits = counter.hits
        if hits >= self.max_failures:
            pause = self.lockout_seconds
        elif self.delay_after is not None and hits >= self.delay_after:
            pause = min(2 ** (hits - self.delay_after), self.max_delay_seconds)
        else:
            return 0
        return max(0, counter.updated_at + pause - now)


class Throttle:
    """Failure counters per ``(scope, key)`` with a :class:`Policy` per scope.

    The generic API, for any kind of guessing (reset codes too)::

        wait = throttle.check("reset-code", username)   # 0: go ahead
        throttle.record_failure("reset-code", username)  # returns the new wait
        throttle.reset("reset-code", username)           # after a success

    ``clock`` returns epoch seconds (tests move it by hand).
    """

    def __init__(self, store, policies, cache_seconds=2, clock=time.time):
        self.store = store
        self.policies = dict(policies)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        #: store key -> (Counter or None, time read), least recently used first.
        self._cache = collections.OrderedDict()
        self._store_down_until = 0
        self._warned_at = None

    # --- the generic API ------------------------------------------------------

    def check(self, scope, key):
        """Seconds ``key`` must wait before its next attempt in ``scope`` (0: go ahead)."""
        counters = self.counters([(scope, key)])
        return self.wait(scope, counters.get((scope, key)))

    def record_failure(self, scope, key, lifetime=None):
        """Count a failure; return the seconds the key must now wait (0: none yet)."""
        policy = self.policies[scope]
        now = int(self.clock())
        counter = self._store_call(self.store.increment, _store_key(scope, key), now,
                                   lifetime or policy.window_seconds)
        if counter is None:
            return 0
        self._remember(_store_key(scope, key), counter, now)
        return self.wait(scope, counter)

    def reset(self, scope, key):
        """Forget the failures of ``key`` (its owner proved who they are)."""
        store_key = _store_key(scope, key)
        self._store_call(self.store.delete, store_key)
        self._remember(store_key, None, int(self.clock()))

    # --- helpers for composite throttles ----------------------------------------

    def wait(self, scope, counter):
        return self.policies[scope].wait(counter, int(self.clock()))

    def counters(self, scoped_keys):
        """``{(scope, key): Counter}`` of those that have failures; one store read at most."""
        return self.counters_as_of(scoped_keys)[0]

    def counters_as_of(self, scoped_keys):
        """:meth:`counters`, and when the oldest of them was read from the store.

        Epoch seconds; a view that could not be read (the store is down)
        counts as read now.
        """
        now = int(self.clock())
        wanted = {_store_key(scope, key): (scope, key) for scope, key in scoped_keys}
        found = {}
        stale = []
        as_of = now
        with self._lock:
            for store_key in wanted:
                cached = self._cache.get(store_key)
                if cached is not None and now - cached[1] < self.cache_seconds:
                    self._cache.move_to_end(store_key)
                    as_of = min(as_of, cached[1])
                    if cached[0] is not None:
                        found[store_key] = cached[0]
                else:
                    stale.append(store_key)
        if stale:
            fresh = self._store_call(self.store.read, stale, now)
            if fresh is not None:
                for store_key in stale:
                    self._remember(store_key, fresh.get(store_key), now)
                found.update(fresh)
        return ({wanted[store_key]: counter for store_key, counter in found.items()
                 if store_key in wanted}, as_of)

    def cached(self, scope, key):
        """The counter this process last saw for ``key`` (no store access), or None."""
        with self._lock:
            entry = self._cache.get(_store_key(scope, key))
        return None if entry is None else entry[0]

    def close(self):
        self.store.close()

    def _remember(self, store_key, counter, now):
        with self._lock:
            self._cache[store_key] = (counter, now)
            self._cache.move_to_end(store_key)
            while len(self._cache) > MAX_CACHED_KEYS:
                self._cache.popitem(last=False)

    def _store_call(self, method, *arguments):
        """Call the store; on an outage log, stay open for a while and return None."""
        now = time.monotonic()
        if now < self._store_down_until:
            return None
        try:
            return method(*arguments)
        except ThrottleStoreUnavailable as error:
            metrics.recorder.backend_unavailable("throttle")
            self._store_down_until = now + STORE_RETRY_SECONDS
            if self._warned_at is None or now - self._warned_at >= 60:
                self._warned_at = now
                security_log.warning(
                    "ThrottleDown: failed-login counters unavailable, not throttling: %s", error)
            return None


def _store_key(scope, key):
    return f"{scope}:{key}"
