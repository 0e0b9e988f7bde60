"""Password hashing: argon2id for new hashes, Mozilla's legacy formats still verify.

New hashes are argon2id (memory-hard) in the standard PHC string format,
``$argon2id$v=19$m=...,t=...,p=...$salt$hash``.

Hashes imported from a database of Mozilla's Python server keep working
(reference §4.3); ``salt`` is the **last 8 bytes** of the base64-decoded
value, and ``pw`` is the UTF-8 encoding of the password:

============== ==================================================================
``{SSHA}``      base64( SHA1(pw + salt) + salt ) — also used for any other
                ``{...}`` prefix or no prefix at all
``{SSHA-256}``  base64( SHA256(pw + salt) + salt )
``{SSCRYPT}``   base64( scrypt(pw, salt, N=16384, r=8, p=1, dklen=64) + salt )
============== ==================================================================

Accounts migrated from weave-minimal carry ``{WEAVE-MINIMAL}`` and 16 hex
digits: the first 64 bits of SHA1(weave-minimal's fixed salt + password),
which weave-minimal used as its file names. It is weak (no per-user salt),
so it is replaced by argon2id at the first login, like the others.

:func:`needs_rehash` is true for every legacy hash and for argon2 hashes made
with other parameters, so that a backend can store a fresh hash after the
next successful login, while it holds the clear-text password.

Nothing here raises on a malformed stored value: it simply does not verify.
Comparisons are constant-time.

The module functions use :data:`DEFAULT_HASHER`. Cheaper parameters (for a
test suite) are only ever used when a :class:`PasswordHasher` built with them
is passed explicitly.
"""

import base64
import binascii
import hashlib
import hmac
import os
import threading

import argon2
from argon2 import exceptions as argon2_exceptions

#: argon2id with 19 MiB of memory and 2 passes, on one lane: the baseline
#: recommended by OWASP's password storage guidance. About 25-30 ms on a
#: current CPU core, and light enough on memory for a small home server that
#: sees many logins at once (see ``max_concurrent``).
DEFAULT_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=argon2.low_level.ARGON2_VERSION,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19456,
    parallelism=1,
)

_LEGACY_SALT_BYTES = 8
_SCRYPT_N = 16384
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_DKLEN = 64
# scrypt needs 128 * r * N bytes (16 MiB); leave room for the library's overhead.
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def _sha1(data, salt):
    return hashlib.sha1(data + salt).digest()


def _sha256(data, salt):
    return hashlib.sha256(data + salt).digest()


def _scrypt(data, salt):
    return hashlib.scrypt(data, salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                          dklen=_SCRYPT_DKLEN, maxmem=_SCRYPT_MAXMEM)


# prefix (upper case) -> (digest function, digest length, expensive?)
_LEGACY_SCHEMES = {
    "{SSHA}": (_sha1, 20, False),
    "{SSHA-256}": (_sha256, 32, False),
    "{SSCRYPT}": (_scrypt, _SCRYPT_DKLEN, True),
}


#: The constant weave-minimal 1.x puts before every password it hashes.
WEAVE_MINIMAL_SALT = r"\x14Q\xd4JbDk\x1bN\x84J\xd0\x05\x8a\x1b\x8b\xa6&V\x1b\xc5\x91\x97\xc4"
WEAVE_MINIMAL_PREFIX = "{WEAVE-MINIMAL}"


def _encode_password(password):
    """UTF-8 bytes of ``password``, or None when it cannot be encoded."""
    if isinstance(password, bytes):
        return password
    if not isinstance(password, str):
        return None
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None


def is_argon2_hash(stored):
    return isinstance(stored, str) and stored.startswith("$argon2")


def _split_legacy(stored):
    """``(scheme, decoded bytes)`` of a legacy hash, or None when it is malformed."""
    text = stored.strip()
    scheme = _LEGACY_SCHEMES["{SSHA}"]
    if text.startswith("{"):
        end = text.find("}")
        if end < 0:
            return None
        prefix = text[:end + 1].upper()
        scheme = _LEGACY_SCHEMES.get(prefix, scheme)
        text = text[end + 1:]
    # Values written by Python 2's base64.encodestring end with a newline.
    text = "".join(text.split())
    try:
        decoded = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    return scheme, decoded


class PasswordHasher:
    """Makes argon2id hashes and checks both argon2 and legacy hashes.

    ``parameters`` are the argon2 parameters for new hashes (an
    :class:`argon2.Parameters`); pass cheap ones only in tests.
    ``max_concurrent`` bounds how many slow hashes (argon2, scrypt) run at the
    same time in this process, and so the memory they take: more than one per
    CPU core gains nothing. Extra callers wait their turn. Thread-safe.
    """

    def __init__(self, parameters=DEFAULT_PARAMETERS, max_concurrent=None):
        self.parameters = parameters
        self._argon2 = argon2.PasswordHasher.from_parameters(parameters)
        if max_concurrent is None:
            max_concurrent = max(2, os.cpu_count() or 1)
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def hash(self, password):
        """The argon2id hash of ``password`` (a ``str``), as a PHC string."""
        data = _encode_password(password)
        if data is None:
            raise ValueError("the password cannot be encoded as UTF-8")
        with self._slots:
            return self._argon2.hash(data)

    def verify(self, password, stored):
        """True when ``password`` matches ``stored`` (argon2 or legacy); never raises."""
        data = _encode_password(password)
        if data is None or not isinstance(stored, str) or not stored:
            return False
        if is_argon2_hash(stored):
            try:
                with self._slots:
                    return self._argon2.verify(stored, data)
            except (argon2_exceptions.VerificationError, argon2_exceptions.InvalidHashError,
                    ValueError, TypeError):
                return False
        return self._verify_legacy(data, stored)

    def _verify_legacy(self, data, stored):
        if stored.upper().startswith(WEAVE_MINIMAL_PREFIX):
            salted = WEAVE_MINIMAL_SALT.encode("utf-8") + data
            actual = hashlib.sha1(salted).hexdigest()[:16]
            return hmac.compare_digest(actual, stored[len(WEAVE_MINIMAL_PREFIX):].lower())
        split = _split_legacy(stored)
        if split is None:
            return False
        (function, digest_length, expensive), decoded = split
        if len(decoded) != digest_length + _LEGACY_SALT_BYTES:
            return False
        expected, salt = decoded[:digest_length], decoded[digest_length:]
        try:
            if expensive:
                with self._slots:
                    actual = function(data, salt)
            else:
                actual = function(data, salt)
        except (ValueError, MemoryError):
            return False
        return hmac.compare_digest(actual, expected)

    def needs_rehash(self, stored):
        """True unless ``stored`` is an argon2 hash made with this hasher's parameters."""
        if not is_argon2_hash(stored):
            return True
        try:
            return self._argon2.check_needs_rehash(stored)
        except Exception:
            return True


#: The hasher the module functions use: :data:`DEFAULT_PARAMETERS`.
DEFAULT_HASHER = PasswordHasher()


def hash_password(password, hasher=None):
    """Hash ``password`` (``str``) with argon2id; returns the PHC string to store."""
    return (hasher or DEFAULT_HASHER).hash(password)


def verify_password(password, stored, hasher=None):
    """True when ``password`` matches the stored hash; False (never an exception) otherwise."""
    return (hasher or DEFAULT_HASHER).verify(password, stored)


def needs_rehash(stored, hasher=None):
    """True for legacy hashes and for argon2 hashes with outdated parameters."""
    return (hasher or DEFAULT_HASHER).needs_rehash(stored)
