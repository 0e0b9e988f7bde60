"""Storage 1.5 output format from Accept (reference §3.7)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.protocol.formats import JSON, NEWLINES, choose_format, choose_format_15


@pytest.mark.parametrize("accept,expected", [
    (None, JSON),
    ("", JSON),
    ("*/*", JSON),
    ("application/*", JSON),
    ("application/json", JSON),                                 # the Rust client
    ("application/json;q=0.9,*/*;q=0.2", JSON),                 # desktop Firefox
    ("application/newlines", NEWLINES),
    ("Application/Newlines", NEWLINES),
    ("application/newlines;q=0.5, application/json;q=0.4", NEWLINES),
    ("application/newlines;q=0.5, */*;q=0.6", JSON),
    ("application/json;q=0.5, application/newlines;q=0.6", NEWLINES),
    ("application/newlines, */*", NEWLINES),                    # named beats wildcard on a tie
    ("application/json, application/newlines", NEWLINES),       # then newlines, as in 1.1
    ("text/html, application/json;q=0.1", JSON),
    ("application/json; charset=utf-8", JSON),
    ("text/html;q=abc", JSON),                                  # unparseable: lenient
    (",", JSON),
])
def test_chosen_format(accept, expected):
    assert choose_format_15(accept) == expected


@pytest.mark.parametrize("accept", [
    "x/yy",                                                     # test_alternative_formats
    "application/whoisi",                                       # gone in 1.5
    "text/html",
    "text/*",
    "application/json;q=0",
    "application/json;q=0, */*",                                # the named q=0 overrides */*
    "application/*;q=0, application/xml",
])
def test_nothing_acceptable_is_none(accept):
    assert choose_format_15(accept) is None


def test_the_1_1_function_is_unchanged():
    assert choose_format("x/yy") == JSON
    assert choose_format("application/whoisi") == "application/whoisi"


@given(st.text(max_size=60))
def test_any_header_gives_an_offer_or_none(accept):
    assert choose_format_15(accept) in (JSON, NEWLINES, None)
