"""Hawk authentication of Sync 1.5 storage requests (reference §2, SS-3, SS-10).

:class:`HawkVerifier` checks, in order: the ``Authorization: Hawk`` header,
the token (signature under one of the configured secrets, expiry, node =
our public base URL), the MAC over the request-target the client signed
(:mod:`.request_target`) with our public host and port, the timestamp skew,
the payload hash when one is sent, and last, once the MAC is known good, the
nonce. It returns the verified :class:`~syncserver.protocol.tokens.Token`
or raises :class:`HawkAuthError`; the caller answers 401 with body ``0``.
Tokens that verified are remembered (:class:`~syncserver.protocol.tokens.TokenCache`,
bounded), so a client's later requests skip the token's signature check and
key derivation; expiry and node are still checked on every request.

Why not ``hawkauthlib.check_signature``: it signs WebOb's ``path_qs`` and
the ``Host`` header (wrong behind proxies and for percent-encoded ids), and
knows no token, skew window with ``tsm`` or payload hash. Its header parser
is used; the header is first required to be printable ASCII, and an
attribute ``scheme`` that would change the scheme (that parser lets it) is
refused. Of a repeated attribute the last counts, as upstream;
the MAC covers the values used, so this gains an attacker nothing.

Nothing secret is logged (no token id, key or MAC): a short reason and the
client's address go to ``syncserver.security``.
"""

import base64
import hashlib
import hmac
import logging
import re
import time

from hawkauthlib.utils import parse_authz_header

from syncserver.protocol.tokens import InvalidToken, TokenCache
from syncserver.web.request_context import CLIENT_ADDRESS_KEY
from syncserver.web.request_target import PublicURL, same_base_url, signed_request_target

security_log = logging.getLogger("syncserver.security")

#: Default timestamp skew window, seconds either way ([REC] 15 min, not upstream's 52 weeks).
DEFAULT_SKEW_SECONDS = 900
#: How long past expiry a token still reads ``GET /1.5/{uid}/info/collections``.
INFO_COLLECTIONS_GRACE_SECONDS = 7200
#: Far longer than any real header (a token id is a few hundred bytes).
MAX_HEADER_LENGTH = 8192

_REQUIRED = ("id", "ts", "nonce", "mac")
_TS_RE = re.compile(r"[0-9]{1,12}")
_PRINTABLE_RE = re.compile(r"[\t\x20-\x7e]*")
_UID_RE = re.compile(r"[0-9]{1,10}")
_INFO_COLLECTIONS_RE = re.compile(r"/1\.5/[0-9]{1,10}/info/collections")


class HawkAuthError(Exception):
    """Authentication failed: answer 401 (body ``0``, ``Content-Type: application/json``).

    ``reason`` is short and safe to log. ``www_authenticate``, when set, is
    the ``WWW-Authenticate`` value to send (the stale-timestamp challenge).
    """

    def __init__(self, reason, www_authenticate=None):
        super().__init__(reason)
        self.reason = reason
        self.www_authenticate = www_authenticate


def normalized_string(ts, nonce, method, target, host, port, hash_attribute="", ext=""):
    """The text Hawk signs (``hawk.1.header``), one line each, every line ending in ``\\n``."""
    return (f"hawk.1.header\n{ts}\n{nonce}\n{method.upper()}\n{target}\n"
            f"{host.lower()}\n{port}\n{hash_attribute}\n{ext}\n")


def hawk_mac(key, ts, nonce, method, target, host, port, hash_attribute="", ext=""):
    """``base64(HMAC-SHA256(key, normalized string))``; ``key``: the token's derived key string."""
    text = normalized_string(ts, nonce, method, target, host, port, hash_attribute, ext)
    return _b64_hmac(key, text)


def payload_hash(content_type, body):
    """Hawk's payload hash of ``body`` (bytes) sent as ``content_type`` (parameters dropped)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    digest = hashlib.sha256(b"hawk.1.payload\n" + media_type.encode("latin-1") + b"\n"
                            + body + b"\n").digest()
    return base64.b64encode(digest).decode("ascii")


def timestamp_mac(key, ts):
    """``tsm``: proves to the client that the server time in a stale-timestamp answer is ours."""
    return _b64_hmac(key, f"hawk.1.ts\n{ts}\n")


def stale_timestamp_challenge(key, now):
    """The ``WWW-Authenticate`` value telling the client our clock."""
    ts = int(now)
    return f'Hawk ts="{ts}", tsm="{timestamp_mac(key, ts)}", error="Stale timestamp"'


def _b64_hmac(key, text):
    key_bytes = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(
        hmac.new(key_bytes, text.encode("latin-1"), hashlib.sha256).digest()).decode("ascii")


def _same(given, expected):
    """Constant-time comparison of two ASCII strings."""
    return hmac.compare_digest(given.encode("latin-1"), expected.encode("latin-1"))


def parse_hawk_header(request):
    """The attributes of the request's ``Authorization: Hawk ...`` header; raises HawkAuthError."""
    header = request.environ.get("HTTP_AUTHORIZATION")
    if header is None:
        raise HawkAuthError("no Authorization header")
    if len(header) > MAX_HEADER_LENGTH:
        raise HawkAuthError("Authorization header too long")
    if not _PRINTABLE_RE.fullmatch(header):
        raise HawkAuthError("Authorization header is not printable ASCII")
    scheme = header.split(None, 1)[0] if header.strip() else ""
    if scheme != "Hawk":
        raise HawkAuthError("Authorization scheme is not Hawk")
    try:
        attributes = parse_authz_header(request)
    except ValueError:
        raise HawkAuthError("malformed Hawk header") from None
    if attributes.pop("scheme") != "Hawk":
        raise HawkAuthError("malformed Hawk header")
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise HawkAuthError("Hawk header lacks " + ", ".join(missing))
    if not _TS_RE.fullmatch(attributes["ts"]):
        raise HawkAuthError("Hawk ts is not an integer")
    return attributes


def _client(environ):
    return environ.get(CLIENT_ADDRESS_KEY) or environ.get("REMOTE_ADDR") or "-"


def _refuse(environ, reason, www_authenticate=None):
    security_log.info("Hawk authentication refused: %s (client %s)", reason, _client(environ))
    return HawkAuthError(reason, www_authenticate)


class HawkVerifier:
    """Verifies storage requests for one public base URL; build once, share between threads.

    ``secrets``: the token secrets, newest first (all verify). ``public_url``:
    the storage node's base URL as clients reach it, which is also the
    ``node`` of its tokens. ``nonce_cache``: a
    :class:`~syncserver.web.nonces.NonceCache` whose window covers
    ``skew_seconds``.
    """

    def __init__(self, secrets, public_url, nonce_cache, skew_seconds=DEFAULT_SKEW_SECONDS):
        if isinstance(secrets, str) or not secrets or not all(
                isinstance(secret, str) and secret for secret in secrets):
            raise ValueError("Hawk needs a list of non-empty token secrets")
        if skew_seconds <= 0:
            raise ValueError("the Hawk timestamp skew window must be positive")
        if nonce_cache.window < skew_seconds:
            raise ValueError("the nonce cache window must cover the timestamp skew window")
        self.secrets = list(secrets)
        self.tokens = TokenCache(self.secrets)
        self.public_url = PublicURL.parse(public_url)
        self.nonce_cache = nonce_cache
        self.skew_seconds = skew_seconds

    def verify(self, request, allow_expired_seconds=0, now=None):
        """The :class:`Token` of a correctly signed, fresh, first-seen request.

        ``allow_expired_seconds``: how long past its expiry the token is still
        good; :data:`INFO_COLLECTIONS_GRACE_SECONDS` for ``GET
        /1.5/{uid}/info/collections`` only (:func:`expired_token_grace`), else 0.
        Raises :class:`HawkAuthError`, or
        :class:`~syncserver.web.nonces.NonceCacheUnavailable` (503).
        """
        now = time.time() if now is None else now
        environ = request.environ
        try:
            attributes = parse_hawk_header(request)
        except HawkAuthError as error:
            raise _refuse(environ, error.reason) from None
        try:
            token = self.tokens.parse(attributes["id"])
        except InvalidToken as error:
            raise _refuse(environ, error.reason) from None
        if token.expires + allow_expired_seconds <= now:
            raise _refuse(environ, "token expired")
        if token.node != self.public_url.base and not same_base_url(token.node, self.public_url):
            raise _refuse(environ, "token issued for another node")

        ts = int(attributes["ts"])
        claimed_hash = attributes.get("hash", "")
        expected = hawk_mac(
            token.derived_key, attributes["ts"], attributes["nonce"], request.method,
            signed_request_target(environ, self.public_url),
            self.public_url.host, self.public_url.port, claimed_hash, attributes.get("ext", ""))
        if not _same(attributes["mac"], expected):
            raise _refuse(environ, "bad MAC")
        if abs(ts - now) > self.skew_seconds:
            raise _refuse(environ, "stale timestamp",
                          stale_timestamp_challenge(token.derived_key, now))
        if claimed_hash and not _same(
                claimed_hash, payload_hash(environ.get("CONTENT_TYPE"), request.body)):
            raise _refuse(environ, "payload hash does not match the body")
        if self.nonce_cache.seen_before(token.token_id, ts, attributes["nonce"], now=now):
            raise _refuse(environ, "nonce already used")
        return token


def expired_token_grace(method, path_info):
    """Seconds an expired token stays good for this request: 2 h for exactly
    ``GET /1.5/{uid}/info/collections`` (``path_info`` as routed, below the mount), else 0.
    """
    if method == "GET" and _INFO_COLLECTIONS_RE.fullmatch(path_info or ""):
        return INFO_COLLECTIONS_GRACE_SECONDS
    return 0


def require_uid(token, path_uid, environ=None):
    """Raise :class:`HawkAuthError` unless the ``{uid}`` of the path is the token's uid."""
    if not (isinstance(path_uid, str) and _UID_RE.fullmatch(path_uid)
            and int(path_uid) == token.uid):
        raise _refuse(environ or {}, "token uid does not match the path")
