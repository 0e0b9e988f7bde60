"""Reading request bodies safely: size limits and JSON decoding.

Clients send JSON with whatever Content-Type they like (``text/plain``,
form-encoded): the body is JSON regardless. A body that is too large is
refused before it is read in full (413); one that is not UTF-8 JSON is a
400 with code 6.
"""

import json

from webob import exc

from syncserver.protocol import respcodes
from syncserver.protocol.respcodes import WeaveError


def read_body(request, max_bytes):
    """Return the raw body bytes, or raise 413 when it exceeds ``max_bytes``."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise exc.HTTPRequestEntityTooLarge(f"Request bodies are limited to {max_bytes} bytes.")
    if length is None and not request.is_body_readable:
        return b""
    wanted = max_bytes + 1 if length is None else length
    data = request.body_file.read(wanted)
    if len(data) > max_bytes:
        raise exc.HTTPRequestEntityTooLarge(f"Request bodies are limited to {max_bytes} bytes.")
    return data


def read_json_body(request, max_bytes):
    """Decode the body as JSON, or raise 400 with code 6."""
    data = read_body(request, max_bytes)
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        # "\ud800" is valid JSON syntax but no text: nothing could store or return it.
        if (b"\\ud" in data or b"\\uD" in data) and _has_lone_surrogate(value):
            raise ValueError("lone surrogate")
        return value
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WeaveError(respcodes.JSON_PARSE_FAILURE) from None


def read_text_body(request, max_bytes):
    """Decode the body as UTF-8 text (for the User API's raw-text bodies), or raise 400 code 6."""
    data = read_body(request, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WeaveError(respcodes.JSON_PARSE_FAILURE) from None


def _has_lone_surrogate(value):
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(item)
                   for key, item in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")
