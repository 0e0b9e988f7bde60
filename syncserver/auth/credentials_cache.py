"""A per-process memory of credentials that were verified recently.

Why: every Sync request carries Basic-auth credentials, and a good password
hash (argon2id, scrypt) is deliberately slow and memory-hard. Running it on
every request would cost tens of milliseconds of CPU and megabytes of memory
each time. A backend that has verified ``(username, password)`` remembers it
here for ``seconds`` and answers the next requests without hashing.

What is stored: only HMAC-SHA256 digests, keyed with a secret (random for
each process unless one is configured), of the username, the password and a
``fingerprint``; never the password itself, nor anything from which it could
be tested offline without the secret. A username -> digests index lets
:meth:`CredentialsCache.forget_user` drop all of a user's entries.

Why the fingerprint: the cache lives in one process, but a password can be
changed, or an account deleted, by any process. The SQL backend passes the
**stored password hash** as the fingerprint, read in the same query that
finds the account. When the password changes anywhere, the stored hash
changes, the digest differs, and the old credentials miss the cache (and then
fail verification) at once. A deleted or disabled account never reaches the
cache lookup. ``forget_user`` is only a tidy-up within the process.

The cache is bounded (least recently used entries go first) and thread-safe.
``seconds = 0`` turns it off: nothing is remembered.
"""

import collections
import hashlib
import hmac
import os
import struct
import threading
import time

DEFAULT_MAX_ENTRIES = 10000


def _encode(value):
    if isinstance(value, bytes):
        return value
    # surrogatepass: a key must never fail to build, whatever the password holds.
    return str(value).encode("utf-8", "surrogatepass")


class CredentialsCache:
    """Remembers verified credentials for ``seconds``; see the module docstring.

    ``secret`` keys the HMAC (``bytes`` or ``str``); None or empty means a
    random secret for this process. ``max_entries`` bounds the memory used.
    """

    def __init__(self, seconds, secret=None, max_entries=DEFAULT_MAX_ENTRIES,
                 clock=time.monotonic):
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.seconds = seconds
        self.max_entries = max_entries
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        self._secret = secret or os.urandom(32)
        self._clock = clock
        self._lock = threading.Lock()
        # digest -> (expiry, username), oldest use first
        self._entries = collections.OrderedDict()
        # username -> set of digests
        self._by_user = {}

    @property
    def enabled(self):
        return self.seconds > 0

    def __len__(self):
        with self._lock:
            return len(self._entries)

    def _key(self, username, password, fingerprint):
        # Each part is length-prefixed, so no choice of parts can collide with another.
        message = b"".join(
            struct.pack(">Q", len(part)) + part
            for part in (_encode(username), _encode(password), _encode(fingerprint or "")))
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def remember(self, username, password, fingerprint):
        """Record that ``password`` is right for ``username`` while its hash is ``fingerprint``."""
        if not self.enabled:
            return
        key = self._key(username, password, fingerprint)
        expiry = self._clock() + self.seconds
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._unindex(key, previous[1])
            self._entries[key] = (expiry, username)
            self._by_user.setdefault(username, set()).add(key)
            # Evict past the bound, and opportunistically the stale entries at the front.
            while self._entries:
                old_key, (old_expiry, old_user) = next(iter(self._entries.items()))
                if len(self._entries) <= self.max_entries and old_expiry > expiry - self.seconds:
                    break
                del self._entries[old_key]
                self._unindex(old_key, old_user)

    def is_known(self, username, password, fingerprint):
        """True when these exact credentials were remembered less than ``seconds`` ago."""
        if not self.enabled:
            return False
        key = self._key(username, password, fingerprint)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            expiry, owner = entry
            if now >= expiry or owner != username:
                del self._entries[key]
                self._unindex(key, owner)
                return False
            self._entries.move_to_end(key)
            return True

    def forget_user(self, username):
        """Drop every entry of ``username`` (after a password change or a deletion)."""
        with self._lock:
            for key in self._by_user.pop(username, ()):
                self._entries.pop(key, None)

    def clear(self):
        """Drop everything."""
        with self._lock:
            self._entries.clear()
            self._by_user.clear()

    def _unindex(self, key, username):
        keys = self._by_user.get(username)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[username]
