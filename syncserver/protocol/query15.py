"""Storage 1.5 query strings of collection GETs and DELETEs.

Implements reference §3.9 (GET collection parameters), the ``ids`` of
§3.8.8 and SS-7 of §5. Differences from 1.1's :mod:`.query` (§4): ``ids``
is limited to 100 valid ids, ``limit`` must be a non-negative integer,
``offset`` is the token of :mod:`.paging`, ``full`` counts by its presence,
the default sort is ``newest``, timestamps must be non-negative, and a bad
value is a 400 with JSON body ``1`` (the reference's [REC]) instead of a page.

Unknown parameters are ignored (``test_weird_args``); a repeated parameter
takes its last value, as in 1.1.
"""

import dataclasses
import re

from webob import exc

from syncserver.protocol import respcodes
from syncserver.protocol.bso import is_valid_bso_id
from syncserver.protocol.paging import DEFAULT_SORT, MAX_SKIP, decode_offset
from syncserver.protocol.respcodes import error_with_code
from syncserver.protocol.timestamps import parse_nonnegative_timestamp
from syncserver.storage import ItemQuery

SORT_ORDERS = ("newest", "oldest", "index")
#: At most this many ids in ``ids=`` (GET and DELETE).
MAX_IDS = 100
#: Larger limits are clamped: no database needs more, and some overflow.
MAX_LIMIT = MAX_SKIP

_DIGITS = re.compile(r"[0-9]{1,40}")


@dataclasses.dataclass(frozen=True)
class CollectionQuery15:
    """A parsed collection GET.

    - ``query``: what to ask the storage. Its ``limit`` is the client's
      ``limit`` **plus one**: the extra row tells that another page follows
      (see :func:`.paging.next_offset`). Its ``offset`` is the token's skip.
    - ``full``: whole BSOs rather than ids.
    - ``modified_at_most`` / ``modified_at_least``: the inclusive bound from
      the ``offset`` token (centiseconds), for ``newest`` / ``oldest``; the
      storage must apply it before skipping ``query.offset`` rows.
    - ``limit``: the page size the client asked for (None: everything).
    """

    query: ItemQuery
    full: bool = False
    modified_at_most: int | None = None
    modified_at_least: int | None = None
    limit: int | None = None


def request_params(request):
    """``request.GET``, or a 400 with body ``1`` when the query string is not UTF-8."""
    try:
        return request.GET
    except UnicodeDecodeError:
        raise bad_value() from None


def parse_collection_query(params):
    """Build a :class:`CollectionQuery15` from a WebOb ``request.GET``.

    Raises a 400 with body ``1`` for: more than 100 ids or any empty or
    invalid one; a ``newer`` / ``older`` that is not a non-negative decimal;
    a ``sort`` other than ``newest``, ``oldest``, ``index``; a ``limit`` that
    is not a non-negative integer; an ``offset`` that is not a valid token.
    """
    fields = {}
    ids = _last(params, "ids")
    if ids is not None:
        fields["ids"] = parse_ids(ids)
    newer = _last(params, "newer")
    if newer is not None:
        # modified > x is modified > floor(x) for whole centiseconds; modified < x needs ceil(x).
        fields["newer"] = _timestamp(newer, round_up=False)
    older = _last(params, "older")
    if older is not None:
        fields["older"] = _timestamp(older, round_up=True)
    sort = _last(params, "sort")
    if sort is None:
        sort = DEFAULT_SORT
    elif sort not in SORT_ORDERS:
        raise bad_value()
    fields["sort"] = sort

    limit = _last(params, "limit")
    if limit is not None:
        limit = _non_negative_integer(limit)
        fields["limit"] = min(limit, MAX_LIMIT) + 1
    bounds = {}
    token = _last(params, "offset")
    if token is not None:
        offset = decode_offset(token, sort, fields.get("newer"), fields.get("older"))
        if offset.skip:
            fields["offset"] = offset.skip
        bounds = {"modified_at_most": offset.modified_at_most,
                  "modified_at_least": offset.modified_at_least}
    return CollectionQuery15(query=ItemQuery(**fields), full="full" in params,
                             limit=None if limit is None else min(limit, MAX_LIMIT), **bounds)


def parse_delete_ids(params):
    """The ids of ``DELETE storage/{collection}?ids=``, or None without ``ids``.

    1 to 100 ids, each valid; an empty list deletes nothing rather than the
    whole collection (SS-7): it is a 400 with body ``1``, like any bad list.
    """
    ids = _last(params, "ids")
    return None if ids is None else parse_ids(ids)


def parse_ids(text):
    """Split an ``ids`` value: comma-separated, each trimmed, 1 to 100, each a valid BSO id.

    Returns the ids in order without repeats; raises a 400 with body ``1``.
    """
    ids = [item_id.strip() for item_id in text.split(",", MAX_IDS)]
    if len(ids) > MAX_IDS or not all(is_valid_bso_id(item_id) for item_id in ids):
        raise bad_value()
    return tuple(dict.fromkeys(ids))


def bad_value():
    """A 400 with JSON body ``1``: a bad query or header value (reference §3.13 [REC])."""
    return error_with_code(respcodes.BAD_VALUE, exc.HTTPBadRequest)


def _last(params, name):
    values = params.getall(name)
    return values[-1] if values else None


def _timestamp(text, round_up):
    try:
        return parse_nonnegative_timestamp(text, round_up=round_up)
    except ValueError:
        raise bad_value() from None


def _non_negative_integer(text):
    text = text.strip()
    if _DIGITS.fullmatch(text) is None:
        raise bad_value()
    return int(text)
