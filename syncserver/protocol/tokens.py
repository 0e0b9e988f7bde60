"""Sync 1.5 tokens (tokenlib v1 format): minted by the tokenserver, checked by storage nodes.

A token id is ``urlsafe_b64(json_payload + HMAC-SHA256(sig_key, json_payload))``
and its derived key is an HKDF of the shared secret, salted with the
payload's ``salt`` (reference §1.8). The format and the crypto come from
:mod:`tokenlib`; this module adds what a storage node needs on top of it:

- several secrets at once (rotation: the first signs, all verify);
- no expiry check here: ``info/collections`` accepts tokens up to 2 h past
  their expiry, so the caller decides, with :attr:`Token.expires`;
- tolerance of a token id sent without its ``=`` padding, and a canonical
  id (what the tokenserver handed out) for key derivation and nonces;
- one exception, :class:`InvalidToken`, whose reason is safe to log (it
  never contains a secret, a key or the token id);
- the payload checked field by field (``uid`` a non-negative integer,
  ``node`` a string, ...), so no caller trips over a surprising type.
"""

import base64
import binascii
import dataclasses
import functools
import hashlib
import hmac
import math
import re
import threading
import time

import tokenlib
import tokenlib.errors

#: The tokenserver's default token lifetime (reference §1.8: [REC] 3600 s).
DEFAULT_DURATION = 3600
#: Far longer than any real token (a few hundred bytes); bounds the work on garbage.
MAX_TOKEN_ID_LENGTH = 4096
#: Length of the HMAC-SHA256 signature at the end of a decoded token.
SIGNATURE_BYTES = 32
#: Verified tokens a :class:`TokenCache` keeps (a token lives an hour; a client sends many
#: requests with it). Past this the oldest is dropped and verified again when it comes back.
DEFAULT_TOKEN_CACHE_ENTRIES = 10_000

_TOKEN_ID_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")
#: What the Python storage node accepted for the FxA fields (reference §1.8, notes).
_FXA_FIELD_RE = re.compile(r"[A-Za-z0-9=_-]{1,64}")
_FXA_FIELDS = ("fxa_uid", "fxa_kid", "hashed_fxa_uid", "hashed_device_id")


class InvalidToken(Exception):
    """The token id is not one of ours. ``reason`` is short and safe to log."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Token:
    """A token whose signature verified. Its expiry has **not** been checked.

    ``token_id`` is the canonical (padded) id and ``derived_key`` the Hawk
    key, the urlsafe-base64 string whose ASCII bytes clients sign with. Both
    stay out of ``repr`` so that logging a token leaks nothing.
    """

    uid: int
    node: str
    expires: float
    salt: str
    fxa_uid: str | None = None
    fxa_kid: str | None = None
    hashed_fxa_uid: str | None = None
    hashed_device_id: str | None = None
    token_id: str = dataclasses.field(default="", repr=False)
    derived_key: str = dataclasses.field(default="", repr=False)


def make_token(payload, secret, duration=DEFAULT_DURATION, now=None):
    """Mint a token for ``payload`` (a dict with ``uid`` and ``node``): ``(token_id, derived_key)``.

    A random ``salt`` is added when absent, and ``expires`` (integer epoch
    seconds) as ``now + duration`` when absent. The payload's key order is
    kept, which makes the reference's test vector reproducible.
    """
    data = dict(payload)
    if "expires" not in data:
        data["expires"] = int((time.time() if now is None else now) + duration)
    manager = _manager(secret)
    token_id = manager.make_token(data)
    return token_id, manager.get_derived_secret(token_id)


def parse_token(token_id, secrets):
    """Verify ``token_id`` against each of ``secrets`` in turn; return its :class:`Token`.

    Raises :class:`InvalidToken` for anything but a well-formed token
    signed with one of the secrets. Expiry is the caller's business.
    """
    if not secrets:
        raise ValueError("parse_token needs at least one secret")
    canonical = canonical_token_id(token_id)
    for secret in secrets:
        manager = _manager(secret)
        try:
            # tokenlib checks the signature in constant time, then decodes the
            # JSON; now=-inf turns off its expiry check (ours is the caller's).
            data = manager.parse_token(canonical, now=-math.inf)
        except tokenlib.errors.InvalidSignatureError:
            continue
        except tokenlib.errors.Error:
            raise InvalidToken("token payload is not JSON") from None
        except (KeyError, TypeError):
            # A signed payload that is not an object, or has no usable "expires".
            raise InvalidToken("token payload has no valid expiry") from None
        return _token_from_payload(data, canonical, manager)
    raise InvalidToken("token signature does not match any secret")


class TokenCache:
    """:func:`parse_token` for one list of secrets, remembering the tokens that verified.

    A token id and what it verifies to never change, and a client signs every
    request of the hour its token lives with it, so a storage node need not
    redo the signature check, JSON decoding and key derivation (two thirds of
    Hawk verification's time) for each request. Only tokens whose signature
    verified are kept, so forged ids cannot fill the cache; expiry is not
    decided here (callers check :attr:`Token.expires` on every request, a
    cached token included). Entries are keyed by the SHA-256 digest of the id
    as sent, and a hit is confirmed by a constant-time comparison of the
    whole id. At most ``max_entries`` are kept, the oldest dropped first.
    Thread-safe.
    """

    def __init__(self, secrets, max_entries=DEFAULT_TOKEN_CACHE_ENTRIES):
        if max_entries < 1:
            raise ValueError("a token cache holds at least one token")
        self.secrets = list(secrets)
        self.max_entries = max_entries
        self._entries = {}  # sha256(id as sent) -> (id as sent, Token); insertion order
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._entries)

    def parse(self, token_id):
        """As :func:`parse_token` (same result, same :class:`InvalidToken`), cached."""
        if not isinstance(token_id, str) or len(token_id) > MAX_TOKEN_ID_LENGTH:
            return parse_token(token_id, self.secrets)  # raises, uncached
        sent = token_id.encode("utf-8", "surrogatepass")
        key = hashlib.sha256(sent).digest()
        entry = self._entries.get(key)
        if entry is not None and hmac.compare_digest(entry[0], sent):
            return entry[1]
        token = parse_token(token_id, self.secrets)
        with self._lock:
            self._entries[key] = (sent, token)
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]
        return token


def canonical_token_id(token_id):
    """The id as the tokenserver handed it out (padded, canonical base64); raises InvalidToken."""
    if not isinstance(token_id, str) or not token_id:
        raise InvalidToken("token id is empty")
    if len(token_id) > MAX_TOKEN_ID_LENGTH:
        raise InvalidToken("token id is too long")
    if not _TOKEN_ID_RE.fullmatch(token_id):
        raise InvalidToken("token id is not urlsafe base64")
    unpadded = token_id.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("token id is not urlsafe base64") from None
    if len(raw) <= SIGNATURE_BYTES:
        raise InvalidToken("token id is too short")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def hash_fxa_uid(metrics_secret, fxa_uid):
    """``hashed_fxa_uid``: HMAC-SHA256(metrics_secret, fxa_uid), first 32 hex digits."""
    return _metrics_hash(metrics_secret, fxa_uid)


def hash_device_id(metrics_secret, hashed_fxa_uid, device_id="none"):
    """``hashed_device_id``: HMAC-SHA256(metrics_secret, hashed_fxa_uid + device_id)[:32 hex].

    OAuth sign-ins carry no device id, so upstream uses the literal ``"none"``.
    """
    return _metrics_hash(metrics_secret, hashed_fxa_uid + device_id)


def _metrics_hash(secret, text):
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


@functools.lru_cache(maxsize=16)
def _manager(secret):
    """One tokenlib manager per secret: it derives the signing key once."""
    if not isinstance(secret, str) or not secret:
        raise ValueError("a token secret must be a non-empty string")
    return tokenlib.TokenManager(secret=secret)


def _token_from_payload(data, canonical, manager):
    if not isinstance(data, dict):  # pragma: no cover - tokenlib fails first (TypeError)
        raise InvalidToken("token payload is not an object")
    uid = data.get("uid")
    if type(uid) is not int or uid < 0:
        raise InvalidToken("token uid is not a non-negative integer")
    node = data.get("node")
    if not isinstance(node, str):
        raise InvalidToken("token node is not a string")
    expires = data.get("expires")
    if type(expires) not in (int, float) or not math.isfinite(expires):
        raise InvalidToken("token payload has no valid expiry")
    salt = data.get("salt")
    if not isinstance(salt, str) or not salt.isascii():
        raise InvalidToken("token salt is not an ASCII string")
    fxa = {}
    for name in _FXA_FIELDS:
        value = data.get(name)
        if value is not None and not (isinstance(value, str) and _FXA_FIELD_RE.fullmatch(value)):
            raise InvalidToken(f"token {name} is malformed")
        fxa[name] = value
    return Token(uid=uid, node=node, expires=expires, salt=salt, token_id=canonical,
                 derived_key=manager.get_derived_secret(canonical), **fxa)
