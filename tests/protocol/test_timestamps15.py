"""Storage 1.5 client timestamps: exact, non-negative, plain decimals (reference §3.2)."""

import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.protocol.timestamps import MAX_CENTISECONDS, parse_nonnegative_timestamp


@pytest.mark.parametrize("text,down,up", [
    ("1700000000.12", 170000000012, 170000000012),
    ("1700000000.1", 170000000010, 170000000010),   # the Rust client's float display
    ("1700000000", 170000000000, 170000000000),
    ("1700000000.", 170000000000, 170000000000),
    (".5", 50, 50),
    ("0", 0, 0),
    (" 12.5 ", 1250, 1250),
    ("1.001", 100, 101),
    ("1.0099999999999999999999999999999999", 100, 101),
    ("1.0000000000000000000000000000000000", 100, 100),
    ("9" * 30, MAX_CENTISECONDS, MAX_CENTISECONDS),
    ("0" * 30 + "1", 100, 100),
])
def test_values(text, down, up):
    assert parse_nonnegative_timestamp(text) == down
    assert parse_nonnegative_timestamp(text, round_up=True) == up


@pytest.mark.parametrize("text", ["", ".", " ", "-1", "-0", "+1", "1e3", "1E3", "nan", "NaN",
                                  "inf", "Infinity", "1,5", "1_000", "0x10", "１２", "1 2",
                                  "1..2", None, 5])
def test_rejected(text):
    with pytest.raises(ValueError):
        parse_nonnegative_timestamp(text)


@given(st.integers(0, 10 ** 12), st.text("0123456789", max_size=40))
def test_exact_against_decimal(whole, fraction):
    text = f"{whole}.{fraction}"
    with decimal.localcontext() as context:
        context.prec = 100
        exact = decimal.Decimal(text) * 100
        floor = int(exact.to_integral_value(decimal.ROUND_FLOOR))
        ceiling = int(exact.to_integral_value(decimal.ROUND_CEILING))
    assert parse_nonnegative_timestamp(text) == min(floor, MAX_CENTISECONDS)
    assert parse_nonnegative_timestamp(text, round_up=True) == min(ceiling, MAX_CENTISECONDS)
