"""Storage 1.5 paging: the ``X-Weave-Next-Offset`` / ``offset`` tokens.

Implements the offset token of reference §3.9, in the scheme both Mozilla
servers use, so a client that pages against them pages against us:

- ``sort=index``: a plain integer, the number of items already returned.
- ``sort=newest`` / ``oldest``: ``"<bound_ms>:<skip>"``. ``bound_ms`` is the
  ``modified`` of the page's last item in integer **milliseconds**; the next
  page reads ``modified <= bound`` (newest) or ``>= bound`` (oldest) and skips
  the ``skip`` items at exactly ``bound`` that were already returned. A bound
  keeps pages right while other items are written, and lets the database
  start at the bound instead of counting through every earlier row.

Storage counts centiseconds, the wire milliseconds: ours are ``cs * 10``, and
a foreign bound is turned into the equivalent centisecond comparison (rounded
down for ``<=``, up for ``>=``), so the conversion is exact.

A plain integer is also accepted for timestamp sorts (a skip without bound,
as the Rust server emits for id-only reads); we then continue numerically.
Pages are stable only if the storage orders ties the same way every time
(reference [REC]: ``id`` as a tie-breaker).
"""

import dataclasses
import re

from webob import exc

from syncserver.protocol import respcodes
from syncserver.protocol.respcodes import error_with_code
from syncserver.protocol.timestamps import MAX_CENTISECONDS

#: Larger skips are clamped (as 1.1's offsets): no collection is that big, and SQL could overflow.
MAX_SKIP = 1_000_000_000
MAX_BOUND_MS = MAX_CENTISECONDS * 10

TIMESTAMP_SORTS = ("newest", "oldest")
DEFAULT_SORT = "newest"

_TOKEN = re.compile(r"(?:([0-9]{1,40}):)?([0-9]{1,40})")


@dataclasses.dataclass(frozen=True)
class PageOffset:
    """Where a page starts: skip ``skip`` items of the query bounded by these (centiseconds).

    ``modified_at_most`` is set for ``sort=newest`` tokens, ``modified_at_least``
    for ``sort=oldest`` ones; both are inclusive.
    """

    skip: int = 0
    modified_at_most: int | None = None
    modified_at_least: int | None = None

    @property
    def bound(self):
        """The inclusive bound in centiseconds, whichever side it is on (None without)."""
        return self.modified_at_most if self.modified_at_least is None else self.modified_at_least


def decode_offset(token, sort, newer, older):
    """Parse an ``offset`` parameter for a query sorted by ``sort``.

    ``newer`` / ``older`` are the query's strict bounds in centiseconds (or
    None): a token bound outside them (``< newer`` or ``> older``) cannot come
    from that query. Raises a 400 with body ``1`` for that and for any token
    we would not have produced.
    """
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise _bad_offset()
    bound_text, skip_text = match.groups()
    skip = min(int(skip_text), MAX_SKIP)
    sort = sort or DEFAULT_SORT
    if bound_text is None:
        return PageOffset(skip=skip)
    if sort not in TIMESTAMP_SORTS:
        raise _bad_offset()
    bound_ms = min(int(bound_text), MAX_BOUND_MS)
    below_newer = newer is not None and bound_ms < newer * 10
    above_older = older is not None and bound_ms > older * 10
    if below_newer or above_older:
        raise _bad_offset()
    if sort == "newest":
        return PageOffset(skip=skip, modified_at_most=bound_ms // 10)
    return PageOffset(skip=skip, modified_at_least=-(-bound_ms // 10))


def next_offset(records, query, limit):
    """The ``X-Weave-Next-Offset`` after a page, or None when nothing follows it.

    ``records`` are the rows the storage returned for ``query.query`` (a
    :class:`.query15.CollectionQuery15`), which asks for ``limit + 1`` rows:
    the extra row only tells that more follow, and the page is
    ``records[:limit]``. The bound is the page's last ``modified``, so the
    records must carry ``"modified"`` (full reads do); without it the token
    keeps the previous bound and counts on, which is as exact, only slower.
    """
    if limit is None or len(records) <= limit:
        return None
    page = records[:limit]
    sort = query.query.sort or DEFAULT_SORT
    previous_skip = query.query.offset or 0
    previous_bound = query.modified_at_most if sort == "newest" else query.modified_at_least
    counting_on = (sort not in TIMESTAMP_SORTS or not page
                   or any(record.get("modified") is None for record in page)
                   or (previous_skip and previous_bound is None))
    if counting_on:
        return encode_offset(previous_skip + len(page), previous_bound)
    bound = page[-1]["modified"]
    skip = 0
    for record in reversed(page):
        if record["modified"] != bound:
            break
        skip += 1
    if skip == len(page) and bound == previous_bound:
        skip += previous_skip
    return encode_offset(skip, bound)


def encode_offset(skip, bound=None):
    """The token for ``skip`` items past ``bound`` (centiseconds); a plain integer without one."""
    skip = min(skip, MAX_SKIP)
    return str(skip) if bound is None else f"{bound * 10}:{skip}"


def _bad_offset():
    return error_with_code(respcodes.BAD_VALUE, exc.HTTPBadRequest)
