"""``X-KeyID`` and ``X-Client-State``: the key generation and client state a token request names.

Reference §1.3, as syncstorage-rs parses it. Clients send
``X-KeyID: <keys_changed_at>-<base64url_nopad(fingerprint)>``, where the
fingerprint is the first 16 bytes of SHA-256(kB), and its hex form is the
*client state*. The header is split at the **first** ``-`` (the base64url
alphabet has ``-`` too, so never at the last). The legacy ``X-Client-State``,
when sent as well, must be that same hex.

A fingerprint longer than 16 bytes (32 hex digits, the width of the
column) is a malformed X-KeyID (401 ``invalid-credentials``); Mozilla's
Python tokenserver answered 400 there, syncstorage-rs failed in the database.

Written here rather than with :mod:`base64` alone because the standard
decoder is lenient where the protocol is not: it accepts padding, skips
characters outside the alphabet and ignores non-canonical trailing bits.
"""

import base64
import binascii
import re

from syncserver.tokenserver import errors

#: The client state is a 16-byte fingerprint, 32 hex digits (the column is that wide).
MAX_CLIENT_STATE_LENGTH = 32
#: A signed 64-bit integer, as both upstreams parse keys_changed_at.
MAX_KEYS_CHANGED_AT = 2**63 - 1

_X_CLIENT_STATE = re.compile(r"[a-zA-Z0-9._-]{1,32}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_TIMESTAMP = re.compile(r"\+?[0-9]{1,19}")


def parse_key_id(key_id, client_state_header=None):
    """``(keys_changed_at or None, client_state)`` from the two headers' values (None: absent).

    Raises :class:`~syncserver.tokenserver.errors.TokenserverError`: 401
    ``invalid-key-id`` when X-KeyID is missing, 401 ``invalid-credentials``
    when it is malformed, 400 when X-Client-State is malformed and 401
    ``invalid-client-state`` when it differs from the X-KeyID fingerprint.
    A keys_changed_at of 0 means absent (returned as None).
    """
    if key_id is None:
        raise errors.missing_key_id()
    timestamp_text, dash, fingerprint = key_id.partition("-")
    if not dash:
        raise errors.invalid_credentials()
    client_state = _decode_fingerprint(fingerprint)
    if client_state_header is not None:
        if not _X_CLIENT_STATE.fullmatch(client_state_header):
            raise errors.invalid_client_state_header()
        if client_state_header != client_state:
            raise errors.client_state_mismatch()
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise errors.invalid_credentials()
    keys_changed_at = int(timestamp_text)
    if keys_changed_at > MAX_KEYS_CHANGED_AT:
        raise errors.invalid_credentials()
    return keys_changed_at or None, client_state


def _decode_fingerprint(text):
    """Strict unpadded base64url to lower-case hex; ``""`` for an empty fingerprint."""
    if len(text) % 4 == 1 or not _BASE64URL.fullmatch(text):
        raise errors.invalid_credentials()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the checks above exclude it
        raise errors.invalid_credentials() from None
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != text:
        raise errors.invalid_credentials()  # non-zero trailing bits: not what a client encodes
    client_state = raw.hex()
    if len(client_state) > MAX_CLIENT_STATE_LENGTH:
        raise errors.invalid_credentials()
    return client_state


def fxa_kid(keys_changed_at, generation, client_state):
    """The token's ``fxa_kid``: ``"%013d-%s" % (K or G, base64url_nopad(client state bytes))``."""
    fingerprint = base64.urlsafe_b64encode(bytes.fromhex(client_state)).decode("ascii")
    return "%013d-%s" % (keys_changed_at or generation or 0, fingerprint.rstrip("="))
