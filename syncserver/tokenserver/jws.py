"""Checking a compact RS256 JWS and its time and issuer claims: what ``jwt.decode`` did here.

Why not ``jwt.decode``: PyJWT 2.15 checks every character of a token
against the base64url alphabet in a Python generator (its fix for
GHSA-hxm8-2xgr-2p9m), which was about 30 % of a whole token request
(``bench/profile_token.py``). The same strictness costs a regular
expression here. The cryptography itself stays with a well-kept library:
the RSA PKCS#1 v1.5 / SHA-256 signature is verified by ``cryptography``
(which PyJWT uses too), with the key PyJWT built from the JWKS.

What is checked, as ``jwt.decode`` with the options the verifier used:

- three segments of canonical unpadded base64url (or padded with ``=`` as
  PyJWT tolerated), a JSON object for header and claims;
- ``alg`` is RS256 (checked by the caller before any key is looked up);
  a ``crit`` header is refused (no extension is understood);
- the signature, by the key given;
- ``exp`` is required, a finite number, and later than now minus the leeway;
- ``nbf``, when present, a finite number no later than now plus the leeway;
- ``sub`` is required; ``iss`` equals the configured issuer when there is
  one. ``iat`` and ``aud`` are not checked (see :mod:`~.oauth`).
"""

import base64
import binascii
import json
import math
import re
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

#: Canonical base64url without padding, as FxA writes it; ``=`` padding is tolerated.
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*={0,2}")


class BadToken(Exception):
    """The token fails a check; the message says which (never the token)."""


class BadSignature(BadToken):
    """The signature does not verify with this key (another key may be tried)."""


def decode_segment(segment):
    """The bytes of one base64url segment (bytes); raises :class:`BadToken`."""
    if not _SEGMENT.fullmatch(segment):
        raise BadToken("not a JWS")
    stripped = segment.rstrip(b"=")
    if len(stripped) % 4 == 1 or (len(stripped) != len(segment) and len(segment) % 4):
        raise BadToken("not a JWS")
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise BadToken("not a JWS") from None
    # Refuse non-canonical trailing bits: one token has one spelling.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
        raise BadToken("not a JWS")
    return decoded


def verified_claims(token, public_key, *, leeway, issuer=None, now=None):
    """The claims of ``token`` (str) once its RS256 signature by ``public_key`` and claims hold.

    Raises :class:`BadSignature` when the signature does not verify with
    this key, :class:`BadToken` for every other fault.
    """
    try:
        raw = token.encode("ascii") if isinstance(token, str) else bytes(token)
    except (UnicodeEncodeError, TypeError):
        raise BadToken("not a JWS") from None
    parts = raw.split(b".")
    if len(parts) != 3:
        raise BadToken("not a JWS")
    header = _json_object(decode_segment(parts[0]))
    claims_bytes = decode_segment(parts[1])
    signature = decode_segment(parts[2])
    if header.get("alg") != "RS256":
        raise BadToken("the algorithm is not RS256")
    if "crit" in header:
        raise BadToken("unsupported crit header")
    try:
        public_key.verify(signature, parts[0] + b"." + parts[1], padding.PKCS1v15(),
                          hashes.SHA256())
    except InvalidSignature:
        raise BadSignature("bad signature") from None
    claims = _json_object(claims_bytes)
    _check_times(claims, leeway, time.time() if now is None else now)
    if "sub" not in claims:
        raise BadToken("no sub claim")
    if issuer is not None:
        if "iss" not in claims:
            raise BadToken("no iss claim")
        if claims["iss"] != issuer:
            raise BadToken("unexpected issuer")
    return claims


def _json_object(data):
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise BadToken("not a JWS") from None
    if not isinstance(value, dict):
        raise BadToken("not a JWS")
    return value


def _check_times(claims, leeway, now):
    if "exp" not in claims:
        raise BadToken("no exp claim")
    expiry = claims["exp"]
    if not _is_number(expiry):
        raise BadToken("exp is not a number")
    if expiry <= now - leeway:
        raise BadToken("expired")
    if "nbf" in claims:
        not_before = claims["nbf"]
        if not _is_number(not_before):
            raise BadToken("nbf is not a number")
        if not_before > now + leeway:
            raise BadToken("not valid yet (nbf)")


def _is_number(value):
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
