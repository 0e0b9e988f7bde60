"""Reading request bodies within a size limit, and strict JSON decoding.

Shared by the protocol layer's body readers (:mod:`.bodies15` today). Each
caller says which error a too-large body raises, since 1.1 and 1.5 answer it
differently. Written here rather than imported from the controllers, which
sit above the protocol layer.
"""

import json


def read_body_at_most(request, max_bytes, too_large):
    """Return the raw body bytes; raise ``too_large()`` when it exceeds ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything
    is read; a body without one is read to one byte past the limit at most.
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large()
    if length is None and not request.is_body_readable:
        return b""
    data = request.body_file.read(max_bytes + 1 if length is None else length)
    if len(data) > max_bytes:
        raise too_large()
    return data


def decode_json(text):
    """Decode JSON text strictly, or raise ``ValueError``.

    Refused on top of :func:`json.loads`'s own errors: ``NaN`` and
    ``Infinity`` (not JSON), nesting too deep for the parser, integers too
    long to convert, and strings holding a lone surrogate (``"\\ud800"`` is
    valid JSON syntax but no text: nothing could store or return it).
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        raise ValueError("lone surrogate in JSON string")
    return value


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _has_lone_surrogate(value):
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
