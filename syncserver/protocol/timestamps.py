"""Sync timestamps: seconds with exactly two decimals, kept as integer centiseconds.

Integers travel from the database to the wire, so no float rounding can ever
move a timestamp; text is produced only when a response is written.
"""

import decimal
import re
import time

_CENTI = decimal.Decimal("0.01")
#: Largest timestamp accepted from a client (year ~2286); keeps values in BIGINT range.
MAX_CENTISECONDS = 999_999_999_999

_PLAIN_DECIMAL = re.compile(r"([0-9]*)(?:\.([0-9]*))?\Z")


def now_centiseconds():
    """The current time, rounded half-even to the nearest centisecond.

    From the clock's integer nanoseconds: exact, and a tenth of the cost of
    going through ``Decimal`` (this runs on every request).
    """
    centiseconds, rest = divmod(time.time_ns(), 10_000_000)
    if rest > 5_000_000 or (rest == 5_000_000 and centiseconds % 2):
        centiseconds += 1
    return centiseconds


def format_timestamp(centiseconds):
    """``137000000010`` -> ``"1370000000.10"`` (always two decimals)."""
    if centiseconds >= 100:
        text = str(centiseconds)
        return text[:-2] + "." + text[-2:]
    sign = "-" if centiseconds < 0 else ""
    whole, frac = divmod(abs(centiseconds), 100)
    return f"{sign}{whole}.{frac:02d}"


def parse_timestamp(text):
    """Parse a client timestamp (``newer=``, ``X-If-Unmodified-Since``).

    Accepts anything :class:`decimal.Decimal` accepts that is finite
    (``"1370000000.1"``, ``"1e9"``, ``"-5"``), quantized half-even to two
    decimals. Raises ``ValueError`` for anything else.
    """
    if text is None:
        raise ValueError("missing timestamp")
    try:
        value = decimal.Decimal(text.strip())
    except (decimal.InvalidOperation, ValueError, AttributeError):
        raise ValueError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    try:
        centis = int(value.quantize(_CENTI, decimal.ROUND_HALF_EVEN) * 100)
    except decimal.InvalidOperation:
        raise ValueError(f"out of range: {text!r}") from None
    # Far-away values are clamped: they compare the same way against any real stamp.
    return max(-MAX_CENTISECONDS, min(MAX_CENTISECONDS, centis))


def parse_nonnegative_timestamp(text, round_up=False):
    """Parse a Storage 1.5 client timestamp into exact centiseconds (reference §3.2).

    Only plain non-negative decimals are accepted (``"1700000000"``,
    ``"1700000000.1"``, ``"1700000000.10"``): what clients echo from our
    headers, and what the Rust client's float formatting produces. Signs,
    exponents, ``NaN``/``inf`` and junk raise ``ValueError``.

    No rounding to the nearest: stored stamps are whole centiseconds, so a
    strict ``modified > x`` or ``modified <= x`` equals the same comparison
    with ``x`` rounded down, and ``modified < x`` the one with ``x`` rounded
    up (``round_up=True``). Digits are read as text, so the result is exact
    however many there are; values past :data:`MAX_CENTISECONDS` are clamped.
    """
    match = _PLAIN_DECIMAL.match(text.strip()) if isinstance(text, str) else None
    if match is None or not (match.group(1) or match.group(2)):
        raise ValueError(f"not a non-negative decimal: {text!r}")
    whole = match.group(1).lstrip("0")
    fraction = match.group(2) or ""
    if len(whole) > len(str(MAX_CENTISECONDS)):
        return MAX_CENTISECONDS
    centis = int(whole or "0") * 100 + int((fraction[:2] or "0").ljust(2, "0"))
    if round_up and fraction[2:].strip("0"):
        centis += 1
    return min(centis, MAX_CENTISECONDS)
