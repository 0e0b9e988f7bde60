"""Storage 1.5 Basic Storage Objects sent by clients: validation into :class:`ItemWrite`.

Implements reference §3.5 (BSO model and validation), the known-bad payload
rule of §3.6 and the per-item part of §3.8.6 step 1; §4 lists what changed
from the 1.1 WBO rules of :mod:`.wbo`, which stay as they are.

- A BSO is a JSON object whose values are scalars or null; a list or an
  object as any value makes it invalid. Null means "not sent".
- Keys: ``id``, ``payload``, ``sortindex``, ``ttl``, plus ``modified`` and
  ``collection``, which are accepted and ignored. Any other key (1.1's
  ``parentid`` / ``predecessorid`` included) makes the BSO invalid, even with
  a null value.
- ``id``: a JSON string of 1 to 64 printable ASCII characters (space to
  ``~``, ``/`` included). On PUT the URL's id wins; a body id is still checked.
- ``sortindex``: a JSON integer in ±999,999,999; floats, numeric strings and
  booleans are invalid (the reference's [REC] numeric typing).
- ``ttl``: a JSON integer ≥ 0. Up to 999,999,999 it is kept (the Rust
  server's bound, so the 3-year TTL of forms works); above it the ttl is
  ignored, i.e. treated as not sent (the Python server's tolerance of client
  bug 977397, moved from one year to that bound: rejecting it would fail the
  client's whole upload, and 31+ years is "never" in practice).
- ``payload``: a string of at most ``max_payload_bytes`` UTF-8 bytes, without
  NUL (PostgreSQL cannot store it; encrypted payloads never contain one).

The reasons of :class:`InvalidBSO` are the Python server's strings, which a
POST answers in its ``failed`` object.
"""

import re

from syncserver.storage import ItemWrite

MAX_SORTINDEX = 999_999_999
#: Largest ttl kept; a larger one is ignored (see the module docstring).
MAX_TTL = 999_999_999

KNOWN_FIELDS = frozenset(("id", "payload", "sortindex", "ttl"))
IGNORED_FIELDS = frozenset(("modified", "collection"))

INVALID_BSO = "invalid bso"
INVALID_ID = "invalid id"
INVALID_SORTINDEX = "invalid sortindex"
INVALID_TTL = "invalid ttl"
INVALID_PAYLOAD = "invalid payload"
PAYLOAD_NOT_A_STRING = "payload not a string"
PAYLOAD_TOO_LARGE = "payload too large"

_BSO_ID = re.compile(r"[ -~]{1,64}")
# Crypto records once uploaded with a zero IV by a broken client (reference §3.6).
_KNOWN_BAD_CRYPTO_PAYLOAD = re.compile(r'"IV":\s*"AAAAAAAAAAAAAAAAAAAAAA=="')


class InvalidBSO(ValueError):
    """The object is not a valid BSO; ``reason`` is the protocol's message."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class KnownBadPayload(InvalidBSO):
    """A ``crypto`` payload with the known-bad IV: the whole request is refused (400 ``8``)."""

    def __init__(self, item_id):
        super().__init__("known bad payload")
        self.item_id = item_id


def is_valid_bso_id(text):
    """True for a string of 1 to 64 printable ASCII characters (a trailing newline is not)."""
    return isinstance(text, str) and _BSO_ID.fullmatch(text) is not None


def is_known_bad_payload(collection, payload):
    """True for the ``crypto`` payloads with an all-zero IV that a broken client uploaded."""
    return (collection == "crypto" and isinstance(payload, str)
            and _KNOWN_BAD_CRYPTO_PAYLOAD.search(payload) is not None)


def parse_bso(obj, max_payload_bytes, item_id=None):
    """Validate a decoded JSON value as a BSO and return an :class:`ItemWrite`.

    ``item_id`` (from the URL of a PUT) replaces the body's ``id``, which is
    still validated when present. Fields that are absent or null are ``None``
    in the result (not sent). Raises :class:`InvalidBSO`; checks run in the
    Python server's order, so the first problem found is the one reported.
    """
    if not isinstance(obj, dict):
        raise InvalidBSO(INVALID_BSO)
    for value in obj.values():
        if isinstance(value, (dict, list)):
            raise InvalidBSO(INVALID_BSO)
    for name in obj:
        if name not in KNOWN_FIELDS and name not in IGNORED_FIELDS:
            raise InvalidBSO(f"unknown field {name!r}")

    body_id = obj.get("id")
    if body_id is not None and not is_valid_bso_id(body_id):
        raise InvalidBSO(INVALID_ID)
    if item_id is None:
        item_id = body_id
    if not is_valid_bso_id(item_id):
        raise InvalidBSO(INVALID_ID)

    sortindex = obj.get("sortindex")
    if sortindex is not None and not _is_json_integer(sortindex, -MAX_SORTINDEX, MAX_SORTINDEX):
        raise InvalidBSO(INVALID_SORTINDEX)

    ttl = obj.get("ttl")
    if ttl is not None:
        if not _is_json_integer(ttl, 0, None):
            raise InvalidBSO(INVALID_TTL)
        if ttl > MAX_TTL:
            ttl = None

    payload = obj.get("payload")
    if payload is not None:
        if not isinstance(payload, str):
            raise InvalidBSO(PAYLOAD_NOT_A_STRING)
        if "\x00" in payload:
            raise InvalidBSO(INVALID_PAYLOAD)
        # A character is at most 4 bytes: most payloads need no encoding to pass.
        if len(payload) * 4 > max_payload_bytes and len(_utf8(payload)) > max_payload_bytes:
            raise InvalidBSO(PAYLOAD_TOO_LARGE)
    return ItemWrite(id=item_id, payload=payload, sortindex=sortindex, ttl=ttl)


def parse_bso_list(objects, max_payload_bytes, collection):
    """Validate a POST's objects (already shaped by :func:`.bodies15.read_bso_list`).

    Returns ``(items, failed)``: the valid :class:`ItemWrite` in order, and
    ``{id: reason}`` for the invalid ones (§3.8.6 step 1). Raises
    :class:`KnownBadPayload` when any object carries a known-bad ``crypto``
    payload, which refuses the whole request (§3.6).
    """
    for obj in objects:
        if isinstance(obj, dict) and is_known_bad_payload(collection, obj.get("payload")):
            raise KnownBadPayload(obj.get("id"))
    items, failed = [], {}
    for obj in objects:
        try:
            items.append(parse_bso(obj, max_payload_bytes))
        except InvalidBSO as error:
            failed[_failure_key(obj)] = error.reason
    return items, failed


def _failure_key(obj):
    item_id = obj.get("id") if isinstance(obj, dict) else None
    return item_id if isinstance(item_id, str) else ""


def _is_json_integer(value, lowest, highest):
    # bool is an int subclass: ``true`` is no number here.
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return value >= lowest and (highest is None or value <= highest)


def _utf8(text):
    return text.encode("utf-8", "surrogatepass")

