"""Verifying the Mozilla-accounts OAuth access tokens that Firefox sends to the tokenserver.

Firefox gets a JWT access token from FxA with the scope
``https://identity.mozilla.com/apps/oldsync`` and sends it as
``Authorization: Bearer``. :class:`OAuthVerifier` checks it the way the
reference (§1.4) asks, the union of syncstorage-rs and PyFxA minus their bugs:

- RS256 only (``alg: none`` and every HS* are refused before any key is
  touched), by the key the header's ``kid`` names, else by each key in turn;
- ``typ`` must be ``at+jwt`` (``application/`` implied, any case);
- ``exp`` is required and must be in the future, with ``leeway_seconds``
  (default 5) for clocks that disagree; ``iat`` is not checked, so a server
  whose clock runs a little behind FxA's still accepts fresh tokens;
- ``aud`` is not required (SS-4: FxA sets it to Mozilla's own tokenserver);
  ``issuer`` may pin ``iss``;
- ``scope``, split on whitespace and commas, must hold the oldsync scope
  exactly; ``sub`` must be 1-64 characters of ``[A-Za-z0-9=_-]`` (it goes into
  tokens and logs); ``fxa-generation`` is optional, 0 meaning absent.

A token that is not a JWS at all (FxA's older opaque tokens: 64 hex
digits) cannot be checked locally, nor can any token when the JWKS offers no
RSA key; those go to ``POST /v1/verify`` (the remote-verify fallback), whose
answer passes the same checks. Any other string that is not a JWS is refused
without a request, since FxA's verify endpoint refuses it anyway.

Errors are two types: :class:`InvalidAccessToken` (the client's fault: 401
``invalid-credentials``) and :class:`AccountsServerUnavailable` (FxA's: 503
with ``Retry-After``), never the one for the other (SS-8). Nothing here logs
or puts the token into an error message. The signature and the time and
issuer claims are checked by :mod:`syncserver.tokenserver.jws` (RSA by
``cryptography``); key handling lives in :mod:`syncserver.tokenserver.jwks`
(keys built by PyJWT), the HTTP calls in
:mod:`syncserver.tokenserver.fxa_client`.
"""

import base64
import binascii
import dataclasses
import json
import math
import re
import time
from pathlib import Path

from syncserver.errors import ConfigError
from syncserver.tokenserver.fxa_client import (
    DEFAULT_SERVER_URL,
    AccountsClient,
    AccountsServerUnavailable,
)
from syncserver.tokenserver.jwks import (
    MIN_RSA_BITS,
    InvalidJwks,
    JwksCache,
    PinnedKeys,
    parse_jwks,
)
from syncserver.tokenserver.jws import BadSignature, BadToken, verified_claims

__all__ = [
    "OLDSYNC_SCOPE", "AccountsServerUnavailable", "InvalidAccessToken", "OAuthSettings",
    "OAuthVerifier", "VerifiedAccessToken",
]

OLDSYNC_SCOPE = "https://identity.mozilla.com/apps/oldsync"

#: FxA's JWTs are about a kilobyte (its verify endpoint takes at most 1024 characters).
MAX_TOKEN_LENGTH = 4096

#: ``users.generation`` is a signed 64-bit column; this value marks a retired account.
MAX_GENERATION = 2**63 - 1

_SAFE_ID = re.compile(r"[A-Za-z0-9=_-]{1,64}")
_OPAQUE_TOKEN = re.compile(r"[0-9a-f]{64}")
#: A compact JWS: three base64url segments (PyJWT tolerates "=" padding; so does this).
_COMPACT_JWS = re.compile(r"([A-Za-z0-9_-]+={0,2})\.([A-Za-z0-9_-]+={0,2})\.([A-Za-z0-9_-]*={0,2})")
_SCOPE_SEPARATORS = re.compile(r"[\s,]+")
# FxA's verify endpoint answers 400 (errno 108 invalid, 109 malformed, 115 expired);
# 401 is taken as a refusal too. Anything else is FxA's trouble, not the client's.
_REFUSALS = (400, 401)


class InvalidAccessToken(Exception):
    """The token is not a valid oldsync access token (401 ``invalid-credentials``).

    The message says why, for the server's own log; it never holds the token.
    """


@dataclasses.dataclass(frozen=True)
class VerifiedAccessToken:
    """What the tokenserver needs from a valid token."""

    #: The FxA user id (``sub``), safe in tokens and logs.
    fxa_uid: str
    #: ``fxa-generation`` in milliseconds, or None (absent or 0).
    generation: int | None
    #: The OAuth client that obtained the token, when given in a safe shape.
    client_id: str | None
    #: Every scope the token carries.
    scope: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class OAuthSettings:
    """How to reach FxA and how strict to be; suggested ini keys ``tokenserver.oauth_*``."""

    #: ``tokenserver.oauth_server_url``: the OAuth server, with or without ``/v1``.
    server_url: str = DEFAULT_SERVER_URL
    #: ``tokenserver.oauth_jwks``: pinned keys, a JWKS as JSON text or a file path;
    #: None fetches ``<server_url>/v1/jwks``.
    jwks: str | None = None
    #: ``tokenserver.oauth_jwks_cache_seconds``: how long fetched keys are trusted.
    jwks_cache_seconds: float = 3600.0
    #: ``tokenserver.oauth_jwks_refetch_seconds``: least time between two fetch attempts.
    jwks_refetch_seconds: float = 30.0
    #: ``tokenserver.oauth_timeout``: seconds to wait for FxA before answering 503.
    timeout: float = 5.0
    #: ``tokenserver.oauth_ca_file``: PEM file of the CAs trusted for server_url.
    ca_file: str | None = None
    #: ``tokenserver.oauth_leeway_seconds``: clock disagreement tolerated on ``exp``.
    leeway_seconds: float = 5.0
    #: ``tokenserver.oauth_issuer``: the only ``iss`` accepted; None accepts any.
    issuer: str | None = None
    #: ``tokenserver.oauth_remote_verify``: ask ``/v1/verify`` about tokens not checkable here.
    remote_verify: bool = True

    def __post_init__(self):
        for name, least in (("jwks_cache_seconds", 0), ("jwks_refetch_seconds", 0),
                            ("leeway_seconds", 0)):
            if not _is_number(getattr(self, name)) or getattr(self, name) < least:
                raise ConfigError(f"tokenserver.oauth_{name} must be a number of seconds "
                                  f"(0 or more), not {getattr(self, name)!r}.")
        if not _is_number(self.timeout) or self.timeout <= 0:
            raise ConfigError(f"tokenserver.oauth_timeout must be a number of seconds above 0, "
                              f"not {self.timeout!r}.")


class OAuthVerifier:
    """Checks access tokens (:meth:`verify`); one instance serves every thread.

    Construction reads the settings (and a pinned JWKS) but never touches
    the network. ``clock`` is the monotonic clock of the JWKS cache.
    """

    def __init__(self, settings=None, *, clock=time.monotonic):
        self.settings = settings if settings is not None else OAuthSettings()
        self._client = AccountsClient(self.settings.server_url, self.settings.timeout,
                                      self.settings.ca_file or None)
        if self.settings.jwks and self.settings.jwks.strip():
            self._keys = PinnedKeys(load_pinned_jwks(self.settings.jwks))
        else:
            self._keys = JwksCache(self._fetch_key_set, self.settings.jwks_cache_seconds,
                                   self.settings.jwks_refetch_seconds, clock=clock)

    @property
    def jwks_url(self):
        return self._client.jwks_url

    def verify(self, token):
        """The :class:`VerifiedAccessToken` of ``token`` (the Bearer string).

        Raises :class:`InvalidAccessToken` or :class:`AccountsServerUnavailable`.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidAccessToken("not an access token (empty or too long)")
        if _OPAQUE_TOKEN.fullmatch(token):
            return self._verify_remotely(token)
        header = _unverified_header(token)
        _check_header(header)
        kid = header.get("kid")
        key_set = self._keys.get(kid)
        if not key_set.keys:
            # FxA publishes no key we can use ("unsupported key type"): let it decide.
            return self._verify_remotely(token)
        candidates = _candidate_keys(key_set, kid)
        if not candidates:
            raise InvalidAccessToken("signed by a key the accounts server does not publish")
        for key in candidates:
            try:
                claims = verified_claims(token, key.rsa_key, leeway=self.settings.leeway_seconds,
                                         issuer=self.settings.issuer or None)
            except BadSignature:
                continue
            except BadToken as error:
                raise InvalidAccessToken(str(error)) from None
            return _token_from_claims(claims)
        raise InvalidAccessToken("bad signature")

    def check(self):
        """For ``syncserver-admin check``: fetch the JWKS now; a sentence about its keys.

        Raises :class:`AccountsServerUnavailable` if it cannot be fetched or
        holds no usable RSA key.
        """
        if self._keys.pinned:
            count = len(self._keys.key_set.keys)
            return f"{count} RSA signing key(s) pinned in tokenserver.oauth_jwks"
        key_set = self._keys.refresh_now()
        if not key_set.keys:
            raise AccountsServerUnavailable(
                f"the JWKS at {self.jwks_url} holds no usable RSA signing key "
                f"({key_set.ignored} other key(s))")
        return f"{len(key_set.keys)} RSA signing key(s) at {self.jwks_url}"

    def _fetch_key_set(self):
        document = self._client.fetch_jwks()
        try:
            return parse_jwks(document)
        except InvalidJwks as error:
            raise AccountsServerUnavailable(
                f"the answer of {self.jwks_url} is not a JWKS: {error}") from None

    def _verify_remotely(self, token):
        if not self.settings.remote_verify:
            raise InvalidAccessToken(
                "cannot be checked locally and tokenserver.oauth_remote_verify is off")
        status, answer = self._client.post_verify(token)
        if status in _REFUSALS:
            errno = answer.get("errno") if isinstance(answer, dict) else None
            raise InvalidAccessToken(f"refused by the accounts server ({status}, errno {errno})")
        if status != 200:
            raise AccountsServerUnavailable(
                f"the accounts server answered {status} at {self._client.verify_url}")
        if not isinstance(answer, dict) or not isinstance(answer.get("scope"), list):
            raise AccountsServerUnavailable(
                f"the answer of {self._client.verify_url} has no scope list")
        return _verified(answer.get("user"), answer["scope"], answer.get("generation"),
                         answer.get("client_id"))


def load_pinned_jwks(value):
    """The :class:`KeySet` of ``tokenserver.oauth_jwks``: JSON text, or the path of a file."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"tokenserver.oauth_jwks: cannot read {value!r}: {error}") from None
    try:
        key_set = parse_jwks(json.loads(text))
    except (ValueError, RecursionError) as error:
        raise ConfigError(f"tokenserver.oauth_jwks is not a JWKS: {error}") from None
    if not key_set.keys:
        raise ConfigError("tokenserver.oauth_jwks holds no RSA signing key for RS256 "
                          f"of {MIN_RSA_BITS} bits or more.")
    return key_set


def _candidate_keys(key_set, kid):
    """The key ``kid`` names; else (or without kid) every key that names itself no ``kid``."""
    if kid is None:
        return key_set.keys
    key = key_set.find(kid)
    if key is not None:
        return (key,)
    return tuple(key for key in key_set.keys if key.kid is None)


def _unverified_header(token):
    """The JOSE header of a compact JWS, which names the key; raises InvalidAccessToken.

    Only the short header segment is decoded here: :func:`~.jws.verified_claims`
    parses the whole token, strictly, right after. The other segments are only checked to be
    base64url of a possible length, so that garbage is refused before a key
    is looked up (and the JWKS perhaps fetched), as before.
    """
    match = _COMPACT_JWS.fullmatch(token)
    if match is None or any(len(segment.rstrip("=")) % 4 == 1 for segment in match.groups()):
        raise InvalidAccessToken("not a JWS")
    segment = match.group(1).rstrip("=")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidAccessToken("not a JWS") from None
    if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
        raise InvalidAccessToken("not a JWS")
    return header


def _check_header(header):
    if header.get("alg") != "RS256":
        raise InvalidAccessToken("the algorithm is not RS256")
    media_type = header.get("typ")
    if not isinstance(media_type, str):
        raise InvalidAccessToken("no typ in the header")
    if "/" not in media_type:
        media_type = "application/" + media_type
    if media_type.lower() != "application/at+jwt":
        raise InvalidAccessToken("typ is not at+jwt")


def _token_from_claims(claims):
    expiry = claims.get("exp")
    if not _is_number(expiry):
        raise InvalidAccessToken("exp is not a number")
    scope = claims.get("scope")
    if not isinstance(scope, str):
        raise InvalidAccessToken("no scope")
    scopes = [item for item in _SCOPE_SEPARATORS.split(scope) if item]
    return _verified(claims.get("sub"), scopes, claims.get("fxa-generation"),
                     claims.get("client_id"))


def _verified(fxa_uid, scopes, generation, client_id):
    """The result once the signature (or FxA) vouched for these values; checks their shape."""
    if not isinstance(fxa_uid, str) or not _SAFE_ID.fullmatch(fxa_uid):
        raise InvalidAccessToken("the user id is missing or not 1-64 of [A-Za-z0-9=_-]")
    if not all(isinstance(item, str) for item in scopes) or OLDSYNC_SCOPE not in scopes:
        raise InvalidAccessToken("the token is not for the oldsync scope")
    if generation is not None:
        if isinstance(generation, bool) or not isinstance(generation, int) \
                or not 0 <= generation <= MAX_GENERATION:
            raise InvalidAccessToken("fxa-generation is not an integer from 0 to 2**63-1")
        generation = generation or None
    if not isinstance(client_id, str) or not _SAFE_ID.fullmatch(client_id):
        client_id = None
    return VerifiedAccessToken(fxa_uid, generation, client_id, tuple(scopes))


def _is_number(value):
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


