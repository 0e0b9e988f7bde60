"""A short-lived, per-process memory of credentials that were verified.

Why: a memory-hard password hash (argon2id) is deliberately slow, and every
Sync request carries Basic credentials. Rerunning the hash, or even querying
the accounts table, on each request would dominate the server's time. So a
backend remembers ``(username, password) -> user`` for ``seconds`` after a
successful check and answers repeats from memory.

Safety:

- Keys are HMAC-SHA256 of the length-prefixed username and password under a
  secret (random per process unless configured), so the cache never holds a
  password or anything that could be checked against one offline.
- Entries expire after ``seconds``; the cache is bounded (least recently used
  entries go first).
- :meth:`CredentialsCache.forget_user` drops every entry of a user. Backends
  call it on a password change, a disabled account and a deletion, in this
  process and (through their own change feed, e.g.
  :class:`syncserver.auth.sql.SQLAuth`) in every other process.
"""

import collections
import hmac
import os
import struct
import threading
import time

DEFAULT_MAX_ENTRIES = 10_000


def _encode(value):
    data = value.encode("utf-8", "surrogatepass")
    return struct.pack(">I", len(data)) + data


class CredentialsCache:
    """Thread-safe ``(username, password) -> value`` memory; ``seconds=0`` disables it."""

    def __init__(self, seconds, secret=None, max_entries=DEFAULT_MAX_ENTRIES, clock=time.monotonic):
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self.seconds = seconds
        self.max_entries = max_entries
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        self._secret = secret or os.urandom(32)
        self._keyed = hmac.new(self._secret, digestmod="sha256")
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> (expiry, username, value), least recently used first.
        self._entries = collections.OrderedDict()
        #: username -> keys, so that forget_user need not scan.
        self._by_user = {}

    @property
    def enabled(self):
        return self.seconds > 0

    def __len__(self):
        with self._lock:
            return len(self._entries)

    def _key(self, username, password):
        # A copy of a keyed HMAC: faster than hmac.digest(), which also lets go of
        # the interpreter for its C call, and under a threaded server getting it
        # back costs more than the HMAC (this runs on every request).
        keyed = self._keyed.copy()
        keyed.update(_encode(username) + _encode(password))
        return keyed.digest()

    def remember(self, username, password, value):
        """Remember that these credentials were verified and gave ``value``."""
        if not self.enabled:
            return
        key = self._key(username, password)
        now = self._clock()
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._unindex(key, previous[1])
            self._entries[key] = (now + self.seconds, username, value)
            self._by_user.setdefault(username, set()).add(key)
            while len(self._entries) > self.max_entries:
                old_key, (_, old_user, _) = self._entries.popitem(last=False)
                self._unindex(old_key, old_user)

    def lookup(self, username, password):
        """The value remembered for these credentials, or None (unknown or expired)."""
        if not self.enabled:
            return None
        key = self._key(username, password)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                self._unindex(key, entry[1])
                return None
            self._entries.move_to_end(key)
            return entry[2]

    def forget_user(self, username):
        """Forget every credential of ``username`` (password changed, disabled, deleted)."""
        with self._lock:
            for key in self._by_user.pop(username, ()):
                self._entries.pop(key, None)

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._by_user.clear()

    def _unindex(self, key, username):
        keys = self._by_user.get(username)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[username]
