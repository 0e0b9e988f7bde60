"""The accounts server's signing keys (a JWKS): parsed, cached, and refetched with care.

Both upstreams fetch ``/v1/jwks`` on every token request (reference §1.4,
SS-8); here the keys are fetched on first use only (a server must start
without network), kept for ``cache_seconds``, and fetched again early when a
token names a key id the cache lacks (FxA rotated its key). Every fetch
attempt, whatever triggered it, waits ``refetch_seconds`` after the previous
one, so a flood of tokens with junk key ids, or an FxA outage, costs one
request per interval rather than one per token. When a refresh fails while
keys are cached, the old keys stay in use and a warning is logged; only a
cold cache turns an outage into :class:`AccountsServerUnavailable`.

A deployment without egress pins its keys instead (:class:`PinnedKeys`).

Only RSA keys for RS256 of at least 2048 bits are kept: the verifier accepts
nothing else, and a weaker key in the document is more likely a mistake (or
an attack on a private server) than a key to trust. Only the public numbers
``n`` and ``e`` are read, so a pinned JWKS that holds a private key never
turns the verifier into a signer.
"""

import dataclasses
import logging
import threading
import time

import jwt
from jwt.algorithms import RSAAlgorithm

from syncserver.tokenserver.fxa_client import AccountsServerUnavailable

logger = logging.getLogger(__name__)

#: Smallest RSA modulus accepted, in bits (FxA's keys are 2048 or larger).
MIN_RSA_BITS = 2048


class InvalidJwks(ValueError):
    """The document is not a JWKS (``{"keys": [...]}``)."""


@dataclasses.dataclass(frozen=True)
class PublicKey:
    """One usable signing key: its ``kid`` (None when the JWKS gives none) and RSA key."""

    kid: str | None
    rsa_key: object


@dataclasses.dataclass(frozen=True)
class KeySet:
    """The usable keys of one JWKS, in document order, and how many others it had."""

    keys: tuple[PublicKey, ...]
    ignored: int = 0

    def find(self, kid):
        """The key whose ``kid`` is ``kid``, or None."""
        for key in self.keys:
            if key.kid == kid:
                return key
        return None


def parse_jwks(document):
    """The :class:`KeySet` of a parsed JWKS; :class:`InvalidJwks` if it is not one.

    Keys of another type, for another use or algorithm, or with bad numbers
    are counted in ``ignored``, not raised: FxA may publish other keys
    beside its RSA ones.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise InvalidJwks('a JWKS is a JSON object {"keys": [...]}')
    keys, ignored, seen = [], 0, set()
    for entry in document["keys"]:
        key = _usable_key(entry)
        if key is None or key.kid in seen:
            ignored += 1
            continue
        seen.add(key.kid)
        keys.append(key)
    return KeySet(tuple(keys), ignored)


def _usable_key(entry):
    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
        return None
    if entry.get("alg", "RS256") != "RS256" or entry.get("use", "sig") != "sig":
        return None
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    n, e = entry.get("n"), entry.get("e")
    if not isinstance(n, str) or not isinstance(e, str):
        return None
    try:
        rsa_key = RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": e})
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
        return None
    if rsa_key.key_size < MIN_RSA_BITS:
        return None
    return PublicKey(kid, rsa_key)


class PinnedKeys:
    """Keys from the configuration: never fetched, never refreshed."""

    pinned = True

    def __init__(self, key_set):
        self.key_set = key_set

    def get(self, kid=None):
        return self.key_set


class JwksCache:
    """Keys fetched by ``fetch`` (a callable returning a :class:`KeySet`), cached; thread-safe.

    ``fetch`` raises :class:`AccountsServerUnavailable` when it cannot
    deliver. ``clock`` is a monotonic clock in seconds (tests move it).
    """

    pinned = False

    def __init__(self, fetch, cache_seconds=3600.0, refetch_seconds=30.0, clock=time.monotonic):
        self._fetch = fetch
        self.cache_seconds = cache_seconds
        self.refetch_seconds = refetch_seconds
        self._clock = clock
        # _state guards the fields below; _fetching makes fetches one at a time.
        self._state = threading.Lock()
        self._fetching = threading.Lock()
        self._keys = None
        self._fetched_at = None
        self._last_attempt = None
        self._last_error = None

    def get(self, kid=None):
        """The keys to check a token whose header names ``kid`` (None: names none).

        Fetches on first use, after ``cache_seconds``, or when ``kid`` is
        unknown, each at most once per ``refetch_seconds``. Raises
        :class:`AccountsServerUnavailable` only when no keys were ever fetched.
        """
        keys, wanted, allowed = self._assess(kid)
        if not wanted:
            return keys
        # A stale cache is still good for everybody while one thread refreshes it; a
        # cold cache or a missing kid makes the others wait for a fetch in flight.
        blocking = keys is None or (kid is not None and keys.find(kid) is None)
        if not allowed and not blocking:
            return keys
        if not self._fetching.acquire(blocking=blocking):
            return keys
        try:
            # Again: a fetch that was in flight may have answered, or just failed.
            keys, wanted, allowed = self._assess(kid)
            if not wanted:
                return keys
            if not allowed:
                return self._without_fetch(keys)
            if kid is not None and keys is not None and keys.find(kid) is None:
                logger.info("a token names a signing key the cached JWKS lacks: fetching it again")
            return self._refresh(keys)
        finally:
            self._fetching.release()

    def refresh_now(self):
        """Fetch now, whatever the cache holds, and keep the answer; raises on failure."""
        with self._fetching:
            with self._state:
                self._last_attempt = self._clock()
            keys = self._fetch()
            with self._state:
                self._keys, self._fetched_at, self._last_error = keys, self._clock(), None
            return keys

    def _assess(self, kid):
        """``(cached keys, whether a fetch is wanted, whether one is allowed now)``."""
        with self._state:
            now = self._clock()
            keys = self._keys
            stale = keys is None or now - self._fetched_at >= self.cache_seconds
            unknown_kid = kid is not None and keys is not None and keys.find(kid) is None
            allowed = (self._last_attempt is None
                       or now - self._last_attempt >= self.refetch_seconds)
            return keys, stale or unknown_kid, allowed

    def _without_fetch(self, keys):
        if keys is None:
            reason = self._last_error or "the signing keys could not be fetched"
            raise AccountsServerUnavailable(
                f"{reason} (tried again at most every {self.refetch_seconds:g} s)")
        return keys

    def _refresh(self, previous):
        with self._state:
            self._last_attempt = self._clock()
        try:
            keys = self._fetch()
        except AccountsServerUnavailable as error:
            with self._state:
                self._last_error = str(error)
                age = None if self._fetched_at is None else self._clock() - self._fetched_at
            if previous is None:
                raise
            logger.warning("could not refresh the accounts server's signing keys, still using "
                           "the ones fetched %d s ago: %s", age, error)
            return previous
        with self._state:
            self._keys, self._fetched_at, self._last_error = keys, self._clock(), None
        return keys
