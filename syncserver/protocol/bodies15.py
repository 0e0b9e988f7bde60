"""Storage 1.5 request bodies: Content-Type, size limit, JSON and newline framing.

Implements reference §3.6 (request body formats) and the 413 of §3.13; the
per-object rules are :mod:`.bso`'s.

- PUT and POST accept ``application/json``, ``text/plain`` (what desktop
  Firefox sends) or no Content-Type at all, all read as JSON; POST also
  accepts ``application/newlines``. Anything else is a 415 with body ``0``.
- A body over ``max_bytes`` (``max_request_bytes``) is a 413 with body ``17``.
- Text that is not UTF-8 JSON is a 400 with body ``6`` (the reference's
  [REC]; the Rust server sends ``8``).
- A PUT body must be a JSON object; a POST body a JSON array of objects
  (or, as newlines, one object per line), each with a string ``id``, no id
  twice. Anything else refuses the whole request: 400 with body ``8``.

Every error is a WebOb exception whose body is the JSON integer, ready to be
raised from a controller.
"""

from webob import exc

from syncserver.protocol import respcodes
from syncserver.protocol.formats import JSON, NEWLINES
from syncserver.protocol.request_body import decode_json, read_body_at_most
from syncserver.protocol.respcodes import error_with_code

#: Media types read as JSON, ``""`` being an absent Content-Type (the reference's [REC]).
JSON_MEDIA_TYPES = frozenset(("", "application/json", "text/plain"))


def check_content_type(request):
    """The framing of a PUT or POST body: :data:`.formats.JSON` or :data:`.formats.NEWLINES`.

    ``application/newlines`` is a POST-only format. Raises 415 (body ``0``)
    for any other media type.
    """
    media_type = (request.content_type or "").strip().lower()
    if media_type in JSON_MEDIA_TYPES:
        return JSON
    if media_type == NEWLINES and request.method == "POST":
        return NEWLINES
    raise error_with_code(respcodes.NO_CODE, exc.HTTPUnsupportedMediaType)


def read_bso_object(request, max_bytes):
    """The JSON object of a PUT body, its fields not yet validated (see :func:`.bso.parse_bso`).

    Raises 415 ``0`` (Content-Type), 413 ``17`` (size), 400 ``6`` (not JSON)
    or 400 ``8`` (not an object).
    """
    check_content_type(request)
    value = _decode(_read(request, max_bytes))
    if not isinstance(value, dict):
        raise _invalid_body()
    return value


def read_bso_list(request, max_bytes):
    """The objects of a POST body, shaped but not yet validated (see :func:`.bso.parse_bso_list`).

    JSON: an array of objects. Newlines: one object per ``\\n``-terminated
    line; an empty body is ``[]``, the last line's ``\\n`` is optional, and
    any empty line is a 400 ``6``. Each object needs a string ``id``, unique
    in the request. Raises 415 ``0``, 413 ``17``, 400 ``6`` or 400 ``8``.
    """
    media_type = check_content_type(request)
    data = _read(request, max_bytes)
    if media_type == NEWLINES:
        objects = [_decode(line) for line in _lines(data)]
    else:
        objects = _decode(data)
        if not isinstance(objects, list):
            raise _invalid_body()
    seen = set()
    for obj in objects:
        if not isinstance(obj, dict):
            raise _invalid_body()
        item_id = obj.get("id")
        if not isinstance(item_id, str) or item_id in seen:
            raise _invalid_body()
        seen.add(item_id)
    return objects


def _lines(data):
    if not data:
        return []
    text = _text(data)
    # Like Rust's str::lines(), as the reference's test_batch_empty_commit expects:
    # "" has no line, "\n" has one empty line.
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n")


def _read(request, max_bytes):
    return read_body_at_most(request, max_bytes, _too_large)


def _too_large():
    return error_with_code(respcodes.SIZE_LIMIT_EXCEEDED, exc.HTTPRequestEntityTooLarge)


def _text(data):
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error_with_code(respcodes.JSON_PARSE_FAILURE) from None


def _decode(data):
    try:
        return decode_json(_text(data))
    except ValueError:
        raise error_with_code(respcodes.JSON_PARSE_FAILURE) from None


def _invalid_body():
    return error_with_code(respcodes.INVALID_WBO)
