"""Weave Basic Objects sent by clients: validation into :class:`ItemWrite`.

The rules (reference §2.5 with its defects fixed, PROTOCOL.md decisions):

- A WBO is a JSON object whose values are all scalars or null; a list or an
  object as any value makes it invalid. Null means "not sent".
- ``id``: 1 to 64 printable ASCII characters without ``/``. Numbers are
  turned into their text (``33`` -> ``"33"``).
- ``parentid`` / ``predecessorid``: up to 64 printable ASCII characters.
- ``sortindex``: an integer in ±999,999,999 (floats and numeric strings are
  truncated toward zero); ``ttl``: whole seconds in 0..31,536,000.
- ``payload``: a string of at most ``max_payload_bytes`` UTF-8 bytes.
- ``modified``, ``username``, ``collection``, ``payload_size`` and unknown
  keys are dropped: the server alone decides them.
"""

import math
import re

from syncserver.storage import ItemWrite

MAX_ID_LENGTH = 64
MAX_SORTINDEX = 999_999_999
MAX_TTL = 31_536_000

_ITEM_ID = re.compile(r"[\x20-\x2e\x30-\x7e]{1,64}\Z")
_REFERENCE_ID = re.compile(r"[\x20-\x7e]{0,64}\Z")
_COLLECTION = re.compile(r"[a-zA-Z0-9._-]{1,32}\Z")

# The messages used in a POST result's "failed" lists.
INVALID_WBO = "invalid wbo"
INVALID_ID = "invalid id"


class InvalidWBO(ValueError):
    """The object is not a valid WBO; ``reason`` is the protocol's message."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def is_valid_item_id(item_id):
    return isinstance(item_id, str) and _ITEM_ID.match(item_id) is not None


def is_valid_reference_id(value):
    """A ``parentid`` / ``predecessorid`` value that could be stored."""
    return isinstance(value, str) and _REFERENCE_ID.match(value) is not None


def is_valid_collection(name):
    return isinstance(name, str) and _COLLECTION.match(name) is not None


def item_id_of(obj):
    """The id of a would-be WBO as text, or None when it has no usable one.

    Used to key POST failures even for objects that fail validation.
    """
    if not isinstance(obj, dict):
        return None
    value = obj.get("id")
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    return _as_text(value)


def parse_wbo(obj, max_payload_bytes, item_id=None):
    """Validate a decoded JSON value as a WBO and return an :class:`ItemWrite`.

    ``item_id`` (from the URL of a PUT) replaces the body's ``id``, which is
    still validated when present. Raises :class:`InvalidWBO`.
    """
    if not isinstance(obj, dict):
        raise InvalidWBO(INVALID_WBO)
    for value in obj.values():
        if isinstance(value, (dict, list)):
            raise InvalidWBO(INVALID_WBO)

    body_id = obj.get("id")
    if body_id is not None:
        body_id = _valid_id(body_id)
    if item_id is None:
        if body_id is None:
            raise InvalidWBO(INVALID_ID)
        item_id = body_id

    fields = {}
    for name in ("parentid", "predecessorid"):
        value = obj.get(name)
        if value is not None:
            text = None if isinstance(value, bool) else _as_text(value)
            if text is None or not _REFERENCE_ID.match(text):
                raise InvalidWBO(f"invalid {name}")
            fields[name] = text
    if obj.get("sortindex") is not None:
        fields["sortindex"] = _sortindex(obj["sortindex"])
    if obj.get("ttl") is not None:
        fields["ttl"] = _ttl(obj["ttl"])
    payload = obj.get("payload")
    if payload is not None:
        if not isinstance(payload, str):
            raise InvalidWBO("payload not a string")
        if "\x00" in payload:  # PostgreSQL cannot store it; no client sends it
            raise InvalidWBO("invalid payload")
        if len(payload) * 4 > max_payload_bytes and len(_utf8(payload)) > max_payload_bytes:
            raise InvalidWBO("payload too large")
        fields["payload"] = payload
    return ItemWrite(id=item_id, **fields)


def payload_size(item):
    """UTF-8 bytes of an :class:`ItemWrite`'s payload (0 without one)."""
    return len(_utf8(item.payload)) if item.payload else 0


def _utf8(text):
    # Bodies holding lone surrogates are refused before validation (code 6).
    return text.encode("utf-8", "surrogatepass")


def _valid_id(value):
    text = None if isinstance(value, bool) else _as_text(value)
    if text is None or not _ITEM_ID.match(text):
        raise InvalidWBO(INVALID_ID)
    return text


def _as_text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def _sortindex(value):
    number = _whole_number(value, allow_fraction=True)
    if number is None or not -MAX_SORTINDEX <= number <= MAX_SORTINDEX:
        raise InvalidWBO("invalid sortindex")
    return number


def _ttl(value):
    # int("3.5") fails as in the reference; a JSON float truncates.
    number = _whole_number(value, allow_fraction=not isinstance(value, str))
    if number is None or not 0 <= number <= MAX_TTL:
        raise InvalidWBO("invalid ttl")
    return number


def _whole_number(value, allow_fraction):
    """int() of value, truncating finite fractions when allowed; None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and allow_fraction else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        if not allow_fraction:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if math.isfinite(number) else None
    return None
