"""Storage 1.5 size limits: info/configuration, and the per-POST split of §3.8.6.

Implements reference §3.8.3 (the six limits and their Python defaults; we
always return all six, the [REC]) and steps 2-3 of §3.8.6 (which valid
items of a POST are written and which are sent back to retry).

Byte limits count UTF-8 payload bytes, except ``max_request_bytes``, which
is the whole request body. Every limit is inclusive: a value equal to it passes.
"""

import dataclasses

from syncserver.protocol.wbo import payload_size

RETRY_BSO = "retry bso"
RETRY_BYTES = "retry bytes"


@dataclasses.dataclass(frozen=True)
class Limits15:
    """The limits a Storage 1.5 node announces and enforces (defaults: the Python server's)."""

    max_request_bytes: int = 2_101_248
    max_post_records: int = 100
    max_post_bytes: int = 2_097_152
    max_total_records: int = 10_000
    max_total_bytes: int = 209_715_200
    max_record_payload_bytes: int = 2_097_152

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field.name} must be a positive integer, not {value!r}")

    def as_info_configuration(self):
        """The JSON object of ``GET info/configuration``: all six limits."""
        return dataclasses.asdict(self)


def split_post(items, limits):
    """Split a POST's valid :class:`ItemWrite` into ``(accepted, failed)``.

    In order: the items past ``max_post_records`` fail with ``"retry bso"``;
    the others add their payload bytes to a running total, and once it
    exceeds ``max_post_bytes`` the item that crossed and every later one
    fail with ``"retry bytes"``. The total is not reduced by a rejection
    (both Mozilla servers), so one large item also turns away the small ones
    after it. A single payload over ``max_record_payload_bytes`` is a
    ``"retry bytes"`` too (the Rust server's rule; :func:`.bso.parse_bso`
    normally refused it already) and is not added to the total.
    ``failed`` maps ids to reasons; ``accepted`` keeps the input order.
    """
    accepted, failed = [], {}
    running_bytes = 0
    for index, item in enumerate(items):
        if index >= limits.max_post_records:
            failed[item.id] = RETRY_BSO
            continue
        size = payload_size(item)
        if size > limits.max_record_payload_bytes:
            failed[item.id] = RETRY_BYTES
            continue
        running_bytes += size
        if running_bytes > limits.max_post_bytes:
            failed[item.id] = RETRY_BYTES
            continue
        accepted.append(item)
    return accepted, failed
