"""Response bodies: JSON with exact timestamps, and the newlines and whoisi formats.

JSON text follows Python's default ``json.dumps`` conventions (``", "`` and
``": "`` separators, non-ASCII escaped) because clients and tests compare
bytes. Timestamps are written as numbers with exactly two decimals, which
:mod:`json` cannot do, so values that must appear verbatim are wrapped in
:class:`RawJSON`.

Multi-record GETs choose their format from ``Accept``: the highest q-value
among ``application/whoisi``, ``application/newlines`` and
``application/json`` named explicitly; on a tie whoisi, then newlines, then
JSON; no Accept, wildcards, unknown types or an unparseable header give JSON.

A large answer is rendered piece by piece as the client reads it
(:class:`StreamedRecords`); its bytes are exactly those
:func:`render_records` gives for the same records.

Storage 1.5 (reference §3.7) chooses with :func:`choose_format_15`: JSON or
newlines only, and an ``Accept`` that allows neither gets no format (406).
"""

import json
import struct

from webob import Response
from webob.acceptparse import create_accept_header

from syncserver.protocol.timestamps import format_timestamp

JSON = "application/json"
NEWLINES = "application/newlines"
WHOISI = "application/whoisi"

# Earlier wins a tie of q-values (PROTOCOL.md decision).
_FORMAT_PREFERENCE = (WHOISI, NEWLINES, JSON)

_encode_string = json.encoder.encode_basestring_ascii


class RawJSON(str):
    """Text inserted into JSON output as it is (e.g. ``1370000000.10``)."""


def timestamp_json(centiseconds):
    """A timestamp ready to be placed in JSON output."""
    return RawJSON(format_timestamp(centiseconds))


def choose_format(accept_header):
    """Return the media type a multi-record GET answers with."""
    if not accept_header:
        return JSON
    try:
        accept = create_accept_header(accept_header)
        parsed = list(getattr(accept, "parsed", None) or ())
    except Exception:
        return JSON
    best, best_q = JSON, 0.0
    for media_range, q, _params, _extensions in parsed:
        media_range = media_range.lower()
        if media_range not in _FORMAT_PREFERENCE or q <= 0:
            continue
        if q > best_q or (q == best_q and
                          _FORMAT_PREFERENCE.index(media_range) < _FORMAT_PREFERENCE.index(best)):
            best, best_q = media_range, q
    return best


def choose_format_15(accept_header):
    """The media type a Storage 1.5 multi-record GET answers with, or None (406).

    Each offer's q-value is that of the most specific range naming it:
    ``application/json``, else ``application/*``, else ``*/*`` (wildcards
    count as JSON only, so ``*/*`` alone gives JSON); ``application/newlines``
    only by its name. The higher q-value wins; on a tie a type named
    explicitly beats one reached by a wildcard, then newlines beats JSON (as
    in 1.1). No header gives JSON, and so does an unparseable one (lenient,
    like 1.1: it says nothing we could honour), and so does one without any
    media range; a header that names only other types, or gives ours q=0,
    gives None.
    """
    if not accept_header:
        return JSON
    try:
        accept = create_accept_header(accept_header)
        parsed = getattr(accept, "parsed", None)
    except Exception:
        return JSON
    if not parsed:  # AcceptInvalidHeader, or a header with no media range at all
        return JSON
    # Specificity: 2 for the exact type, 1 for application/*, 0 for */*.
    matches = {JSON: (-1, 0.0), NEWLINES: (-1, 0.0)}
    for media_range, q, _params, _extensions in parsed:
        # WebOb leaves media-type parameters in the range ("application/json;charset=utf-8").
        media_range = media_range.split(";", 1)[0].strip().lower()
        for offer, specificity in _ranges_15(media_range):
            if specificity > matches[offer][0]:
                matches[offer] = (specificity, q)
    candidates = [(q, specificity == 2, offer == NEWLINES, offer)
                  for offer, (specificity, q) in matches.items() if specificity >= 0 and q > 0]
    return max(candidates)[3] if candidates else None


def _ranges_15(media_range):
    """The 1.5 offers a media range names, each with its specificity."""
    if media_range in (JSON, NEWLINES):
        return ((media_range, 2),)
    if media_range == "application/*":
        return ((JSON, 1),)
    if media_range == "*/*":
        return ((JSON, 0),)
    return ()


def dumps(value):
    """Encode ``value`` (dicts, lists, str, int, float, bool, None, RawJSON) as JSON text."""
    if isinstance(value, RawJSON):
        return str(value)
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_encode_string(str(key))}: {dumps(item)}"
                               for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        # Lists of ids (a POST's "success") are the common case: strings straight through.
        return "[" + ", ".join([_encode_string(item) if type(item) is str else dumps(item)
                                for item in value]) + "]"
    return json.dumps(value)


def record_json(record):
    """Encode one storage record, writing ``modified`` with two decimals.

    Unrolled on purpose: it runs once per record of every GET (hot path).
    """
    get = record.get
    text = '{"id": ' + _encode_string(record["id"])
    value = get("modified")
    if value is not None:
        text += ', "modified": ' + format_timestamp(value)
    value = get("sortindex")
    if value is not None:
        text += ', "sortindex": ' + str(value)
    value = get("payload")
    if value is not None:
        text += ', "payload": ' + _encode_string(value)
    value = get("parentid")
    if value is not None:
        text += ', "parentid": ' + _encode_string(value)
    value = get("predecessorid")
    if value is not None:
        text += ', "predecessorid": ' + _encode_string(value)
    return text + "}"


def render_records(records, full, media_type):
    """Body bytes for a list of records (full dicts, or ids when not ``full``)."""
    encoded = [record_json(record) if full else _encode_string(record["id"])
               for record in records]
    return render_encoded(encoded, media_type)


class StreamedRecords:
    """A WSGI ``app_iter``: records rendered chunk by chunk while the server sends them.

    ``chunks`` yields lists of records (full dicts, or ids when not ``full``),
    such as a storage ``RecordStream``; one piece of body is rendered per
    chunk, so memory holds one chunk at a time. :meth:`close` (called by the
    WSGI server when the response ends, even if the client went away) closes
    ``chunks`` if it can be closed.
    """

    def __init__(self, chunks, full, media_type):
        self._chunks = chunks
        self._full = full
        self._media_type = media_type

    def __iter__(self):
        full = self._full
        media_type = self._media_type
        first = True
        if media_type == JSON:
            yield b"["
        for chunk in self._chunks:
            if not chunk:
                continue
            encoded = [record_json(record) if full else _encode_string(record["id"])
                       for record in chunk]
            if media_type == JSON:
                text = ", ".join(encoded)
                yield (text if first else ", " + text).encode("ascii")
            else:
                yield render_encoded(encoded, media_type)
            first = False
        if media_type == JSON:
            yield b"]"

    def close(self):
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def records_response(stream, full, media_type):
    """The answer to a collection read (both APIs), with ``X-Weave-Records``.

    ``stream`` comes from the storage's ``stream_items``: a small answer is
    one body with its length; a large one is rendered as the client reads it.
    """
    if stream.records is not None:
        body = render_records(stream.records, full, media_type)
        response = Response(body=body, content_type=media_type, charset=None)
    else:
        response = Response(app_iter=StreamedRecords(stream, full, media_type),
                            content_type=media_type, charset=None)
    response.headers["X-Weave-Records"] = str(stream.count)
    return response


def render_encoded(encoded, media_type):
    """Join already-encoded JSON texts in ``media_type``'s framing."""
    if media_type == NEWLINES:
        return "".join(text + "\n" for text in encoded).encode("ascii")
    if media_type == WHOISI:
        chunks = []
        for text in encoded:
            data = text.encode("ascii")
            chunks.append(struct.pack(">I", len(data)))
            chunks.append(data)
        return b"".join(chunks)
    return ("[" + ", ".join(encoded) + "]").encode("ascii")
