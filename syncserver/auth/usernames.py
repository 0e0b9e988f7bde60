"""Usernames, e-mail addresses and password strength (reference §3.1, §3.3).

A Sync username is 1 to 32 characters of ``[a-zA-Z0-9._-]``. Clients derive
it from the account's e-mail address (:func:`extract_username`): the
lowercased base32 of the SHA-1 of the IDNA-encoded, lowercased address,
always 32 characters of ``[a-z2-7]``.
"""

import base64
import hashlib
import re
import urllib.parse

#: What a username looks like, without anchors (for URL routes).
USERNAME_PATTERN = r"[a-zA-Z0-9._-]{1,32}"

_USERNAME_RE = re.compile(USERNAME_PATTERN)

#: Longest e-mail address accepted (RFC 5321 path limit, minus the brackets).
MAX_EMAIL_LENGTH = 254

#: Shortest acceptable password, in UTF-8 bytes.
MIN_PASSWORD_BYTES = 8


def is_valid_username(name):
    """True when ``name`` is a ``str`` of 1 to 32 characters of ``[a-zA-Z0-9._-]``."""
    return isinstance(name, str) and _USERNAME_RE.fullmatch(name) is not None


def extract_username(name):
    """The Sync username for ``name``, which is a username or an e-mail address.

    - Without ``@``: ``name`` must be a valid username and is returned as it is
      (case kept); otherwise :class:`ValueError`.
    - With ``@``: percent-decode, decode as UTF-8, split at the first ``@``,
      IDNA-encode the local part and the domain separately, join them with
      ``@``, lowercase, then SHA-1, base32, lowercase (32 characters).
      Invalid UTF-8 or an IDNA failure (an empty label such as ``a..b``, a
      label longer than 63 characters) raises :class:`UnicodeError`.

    ``name`` may be ``str`` or ``bytes``. :class:`UnicodeError` is a subclass
    of :class:`ValueError`, so ``except ValueError`` catches every refusal.
    """
    if isinstance(name, bytes):
        if b"@" not in name:
            try:
                text = name.decode("ascii")
            except UnicodeDecodeError:
                raise ValueError("invalid username") from None
            return extract_username(text)
    elif not isinstance(name, str):
        raise TypeError("the username must be str or bytes")
    elif "@" not in name:
        if not is_valid_username(name):
            raise ValueError("invalid username")
        return name

    # unquote_to_bytes UTF-8-encodes a str first, then decodes %XX escapes.
    address = urllib.parse.unquote_to_bytes(name).decode("utf-8")
    local, _, domain = address.partition("@")
    encoded = _idna(local) + b"@" + _idna(domain)
    digest = hashlib.sha1(encoded.lower()).digest()
    return base64.b32encode(digest).decode("ascii").lower()


def _idna(text):
    """Python's ``idna`` codec (IDNA 2003, per label); raises UnicodeError."""
    try:
        return text.encode("idna")
    except UnicodeError:
        raise
    except ValueError as error:  # be sure every refusal is a UnicodeError
        raise UnicodeError(str(error)) from error


# --- e-mail addresses (reference §3.3 step 3) -------------------------------

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
# A quoted local part: printable ASCII except '"' and '\', or a backslash escape.
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A top-level domain: 2+ letters, or an IDNA ("xn--") one.
_TLD = r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9-]{1,59})"
_HOSTNAME = rf"(?:{_LABEL}\.)+{_TLD}\.?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_EMAIL_RE = re.compile(
    rf"(?:{_DOT_ATOM}|{_QUOTED})@(?:{_HOSTNAME}|{_IPV4}|\[{_IPV4}\])", re.ASCII)


def is_valid_email(text):
    """True when ``text`` looks like a deliverable e-mail address.

    The local part is a dot-atom (``tarek+sync``) or a quoted string; the
    domain is a host name whose last label is a TLD of 2+ letters, or a
    dotted IPv4 address. ``tarek+sync@mozilla.com`` and ``tarek@127.0.0.1``
    pass; ``tarek@moz`` and ``tarek@192.12.32334.3`` do not. Longer than 254
    characters fails. Non-ASCII addresses are checked in their IDNA form
    (the form :func:`extract_username` hashes).
    """
    if not isinstance(text, str) or not text or len(text) > MAX_EMAIL_LENGTH:
        return False
    if not text.isascii():
        local, at, domain = text.partition("@")
        if not at:
            return False
        try:
            text = (_idna(local) + b"@" + _idna(domain)).decode("ascii")
        except UnicodeError:
            return False
        if len(text) > MAX_EMAIL_LENGTH:
            return False
    return _EMAIL_RE.fullmatch(text) is not None


def is_weak_password(username, password):
    """True when ``password`` is under 8 UTF-8 bytes, or is the username.

    The username comparison ignores case and surrounding spaces.
    """
    if len(password.encode("utf-8", "surrogatepass")) < MIN_PASSWORD_BYTES:
        return True
    return password.lower().strip() == username.lower().strip()
