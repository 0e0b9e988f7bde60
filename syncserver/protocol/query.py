"""Query strings of collection GETs and DELETEs, parsed into :class:`ItemQuery`.

Unknown parameters are ignored (clients add metrics markers such as
``?client=FxHome&v=1.1b2``); a repeated parameter takes its last value. A bad
value gives a plain 400 ``Invalid value for "<name>"``.
"""

import math

from webob import exc

from syncserver.protocol.timestamps import parse_timestamp
from syncserver.protocol.wbo import is_valid_item_id, is_valid_reference_id
from syncserver.storage import ItemQuery

SORT_ORDERS = ("oldest", "newest", "index")
#: Larger limits and offsets are clamped: no database needs more, and some overflow.
MAX_PAGE_VALUE = 1_000_000_000


def query_parameters(request):
    """``request.GET``, or a plain 400 when the query string is not UTF-8."""
    try:
        return request.GET
    except UnicodeDecodeError:
        raise exc.HTTPBadRequest("The query string is not valid UTF-8.") from None


def parse_item_query(params):
    """Build the :class:`ItemQuery` from a WebOb ``request.GET``."""
    def last(name):
        values = params.getall(name)
        return values[-1] if values else None

    fields = {}
    ids = last("ids")
    if ids is not None:
        # Ids that no item can have (too long, NUL...) simply match nothing.
        fields["ids"] = tuple(item_id for item_id in dict.fromkeys(ids.split(","))
                              if item_id == "" or is_valid_item_id(item_id))
    for name in ("parentid", "predecessorid"):
        value = last(name)
        if value is not None:
            if is_valid_reference_id(value):
                fields[name] = value
            else:
                fields["ids"] = ()  # no item can have it: match nothing
    for name in ("newer", "older"):
        value = last(name)
        if value is not None:
            fields[name] = _parse(name, value, parse_timestamp)
    for name in ("index_above", "index_below"):
        value = last(name)
        if value is not None:
            fields[name] = _parse(name, value, _finite_float)
    sort = last("sort")
    if sort in SORT_ORDERS:
        fields["sort"] = sort

    limit = last("limit")
    offset = last("offset")
    if limit is not None:
        limit = _parse("limit", limit, int)
        if limit > 0:
            fields["limit"] = min(limit, MAX_PAGE_VALUE)
        # offset counts only alongside a limit parameter (reference §2.8).
        if offset is not None:
            offset = _parse("offset", offset, int)
            if offset > 0:
                fields["offset"] = min(offset, MAX_PAGE_VALUE)
    elif offset is not None:
        _parse("offset", offset, int)
    return ItemQuery(**fields)


def wants_full_records(params):
    """``full`` with any non-empty value (``full=0`` included) asks for whole records."""
    values = params.getall("full")
    return bool(values and values[-1])


def _finite_float(text):
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _parse(name, value, convert):
    try:
        return convert(value.strip())
    except (ValueError, OverflowError):
        raise exc.HTTPBadRequest(f'Invalid value for "{name}"') from None
