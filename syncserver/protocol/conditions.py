"""Storage 1.5 request conditions: X-If-* preconditions, declared sizes, batch parameters.

Implements the header rules of reference §3.4 (``X-If-Modified-Since``,
``X-If-Unmodified-Since``, ``X-Weave-Records`` / ``-Bytes`` /
``-Total-Records`` / ``-Total-Bytes``) and the query parameters of §3.10
(``batch``, ``commit``). The controller decides what each means for its
target resource; this module only parses and applies the limits.

Errors are 400s with a JSON integer body: ``17`` for a declared size over
its limit, ``1`` (the reference's [REC] for bad values) for anything else.
"""

import dataclasses
import re

from webob import exc

from syncserver.protocol import respcodes
from syncserver.protocol.query15 import bad_value
from syncserver.protocol.respcodes import error_with_code
from syncserver.protocol.timestamps import parse_nonnegative_timestamp

_DIGITS = re.compile(r"[0-9]{1,40}")

#: Declared-size headers and the :class:`.limits15.Limits15` field each is checked against.
SIZE_HEADERS = (
    ("X-Weave-Records", "records", "max_post_records"),
    ("X-Weave-Bytes", "bytes", "max_post_bytes"),
    ("X-Weave-Total-Records", "total_records", "max_total_records"),
    ("X-Weave-Total-Bytes", "total_bytes", "max_total_bytes"),
)


@dataclasses.dataclass(frozen=True)
class Preconditions:
    """The X-If-* headers of a request, in centiseconds (None: not sent; never both)."""

    if_modified_since: int | None = None
    if_unmodified_since: int | None = None

    def not_modified(self, resource_timestamp):
        """True when a GET answers 304: the resource is not newer than ``X-If-Modified-Since``."""
        return self.if_modified_since is not None and resource_timestamp <= self.if_modified_since

    def precondition_failed(self, resource_timestamp):
        """True when the request answers 412: the resource is newer than the header."""
        return (self.if_unmodified_since is not None
                and resource_timestamp > self.if_unmodified_since)


@dataclasses.dataclass(frozen=True)
class DeclaredSizes:
    """The sizes a client declared in ``X-Weave-*`` headers (None: not sent)."""

    records: int | None = None
    bytes: int | None = None
    total_records: int | None = None
    total_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class BatchParams:
    """The batch parameters of a POST (§3.10).

    - ``new_batch``: ``batch=true`` (any case) or an empty ``batch``: open a batch.
    - ``batch_id``: ``batch=<id>``: continue that batch (the id as sent,
      unchecked: only the storage knows which ids exist).
    - ``commit``: ``commit=true``: apply the batch.
    Neither ``new_batch`` nor ``batch_id``: a plain POST.
    """

    new_batch: bool = False
    batch_id: str | None = None
    commit: bool = False

    @property
    def in_batch(self):
        return self.new_batch or self.batch_id is not None


def parse_preconditions(request):
    """The X-If-* headers of ``request``, in centiseconds.

    Both sent, or either not a non-negative decimal (empty included): 400
    with body ``1``. Both compare ``resource > value``, which for whole
    centiseconds equals comparing with the value rounded down, so it is.
    """
    modified_since = request.headers.get("X-If-Modified-Since")
    unmodified_since = request.headers.get("X-If-Unmodified-Since")
    if modified_since is not None and unmodified_since is not None:
        raise bad_value()
    return Preconditions(if_modified_since=_timestamp(modified_since),
                         if_unmodified_since=_timestamp(unmodified_since))


def check_declared_sizes(request, limits):
    """Parse the ``X-Weave-*`` size headers of ``request``; hold each to its limit in ``limits``.

    A value over its limit (equal passes) is a 400 with body ``17``; one that
    is not a non-negative integer a 400 with body ``1``. Firefox sends none
    of them; the batch totals are counted for real elsewhere (SS-9).
    """
    sizes = {}
    for header, field, limit_name in SIZE_HEADERS:
        text = request.headers.get(header)
        if text is None:
            continue
        text = text.strip()
        if _DIGITS.fullmatch(text) is None:
            raise bad_value()
        value = int(text)
        if value > getattr(limits, limit_name):
            raise error_with_code(respcodes.SIZE_LIMIT_EXCEEDED, exc.HTTPBadRequest)
        sizes[field] = value
    return DeclaredSizes(**sizes)


def parse_batch_params(params):
    """The ``batch`` / ``commit`` parameters of a POST's ``request.GET``.

    ``commit`` takes only ``true`` (any case) and needs ``batch``; anything
    else is a 400 with body ``1``. A repeated parameter takes its last value.
    """
    batch = _last(params, "batch")
    commit = _last(params, "commit")
    if commit is not None and (batch is None or commit.lower() != "true"):
        raise bad_value()
    if batch is None:
        return BatchParams()
    if batch == "" or batch.lower() == "true":
        return BatchParams(new_batch=True, commit=commit is not None)
    return BatchParams(batch_id=batch, commit=commit is not None)


def _timestamp(text):
    if text is None:
        return None
    try:
        return parse_nonnegative_timestamp(text)
    except ValueError:
        raise bad_value() from None


def _last(params, name):
    values = params.getall(name)
    return values[-1] if values else None
