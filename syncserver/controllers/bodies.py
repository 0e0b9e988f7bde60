"""Reading request bodies safely: size limits, transport failures and JSON decoding.

Clients send JSON with whatever Content-Type they like (``text/plain``,
form-encoded): the body is JSON regardless. A body that is too large is
refused before it is read in full (413); one that is not UTF-8 JSON is a
400 with code 6.

A body that cannot be read at all (a client that hangs up before sending
what ``Content-Length`` promised, a malformed chunked encoding) is a 400
and one INFO line, not a crash: the stream belongs to the WSGI server, whose
errors differ (WebOb's ``DisconnectionError``, gunicorn's ``NoMoreData`` and
``InvalidChunkSize``, ``OSError`` from a reset socket), so every error the
stream raises counts as the client's.
"""

import json
import logging

from webob import exc

from syncserver.protocol import respcodes
from syncserver.protocol.respcodes import WeaveError
from syncserver.web.request_context import client_address

logger = logging.getLogger("syncserver")


def read_body(request, max_bytes):
    """Return the raw body bytes, or raise 413 when it exceeds ``max_bytes``."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise exc.HTTPRequestEntityTooLarge(f"Request bodies are limited to {max_bytes} bytes.")
    if length is None and not request.is_body_readable:
        return b""
    wanted = max_bytes + 1 if length is None else length
    data = _read_stream(request, lambda: request.body_file.read(wanted))
    if len(data) > max_bytes:
        raise exc.HTTPRequestEntityTooLarge(f"Request bodies are limited to {max_bytes} bytes.")
    return data


def read_form(request, max_bytes):
    """Parse the form in the body (``request.POST``), or raise 400 when it cannot be read.

    The body is read first, through the same guard as every other body, so
    that parsing the form never touches the server's stream.
    """
    request.body = read_body(request, max_bytes)
    try:
        return request.POST
    except (UnicodeDecodeError, ValueError):
        raise exc.HTTPBadRequest("The form could not be parsed.") from None


def _read_stream(request, read):
    try:
        return read()
    except Exception as error:  # the server's stream: see the module docstring
        logger.info("request body unreadable: %s %s from %s: %s", request.method,
                    request.path_info, client_address(request), type(error).__name__)
        raise exc.HTTPBadRequest("The request body could not be read completely.") from None


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
