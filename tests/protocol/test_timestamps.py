"""The server clock in centiseconds: rounded half-even, from the integer nanoseconds."""

import time

import pytest

from syncserver.protocol import timestamps


@pytest.mark.parametrize("nanoseconds, expected", [
    (1_370_000_000_104_999_999, 137_000_000_010),
    (1_370_000_000_105_000_000, 137_000_000_010),  # half: to the even neighbour
    (1_370_000_000_115_000_000, 137_000_000_012),
    (1_370_000_000_105_000_001, 137_000_000_011),
    (1_370_000_000_999_999_999, 137_000_000_100),
])
def test_now_is_rounded_half_even(monkeypatch, nanoseconds, expected):
    monkeypatch.setattr(timestamps.time, "time_ns", lambda: nanoseconds)
    assert timestamps.now_centiseconds() == expected


def test_now_follows_the_clock():
    before = time.time()
    now = timestamps.now_centiseconds()
    after = time.time()
    assert round(before * 100) - 1 <= now <= round(after * 100) + 1
