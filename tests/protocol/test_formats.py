"""Output formats and exact two-decimal timestamps."""

import json
import struct

import pytest

from syncserver.protocol import formats
from syncserver.protocol.timestamps import format_timestamp, parse_timestamp


@pytest.mark.parametrize("accept,expected", [
    (None, formats.JSON), ("", formats.JSON), ("*/*", formats.JSON),
    ("application/xxx", formats.JSON), ("text/html", formats.JSON), ("garbage;;;q=x", formats.JSON),
    ("application/newlines", formats.NEWLINES), ("application/whoisi", formats.WHOISI),
    ("application/json, application/newlines, application/whoisi", formats.WHOISI),
    ("application/json, application/newlines", formats.NEWLINES),
    ("application/whoisi;q=0.5, application/json", formats.JSON),
    ("application/newlines;q=0.9, application/whoisi;q=0.8", formats.NEWLINES),
    ("application/json;q=0, application/newlines;q=0", formats.JSON),
])
def test_choose_format(accept, expected):
    assert formats.choose_format(accept) == expected


RECORDS = [{"id": "a", "modified": 137000000010, "sortindex": 3, "payload": "é"},
           {"id": "b", "parentid": "p"}]


def test_json_records_match_python_json_layout():
    body = formats.render_records(RECORDS, True, formats.JSON)
    assert body == (b'[{"id": "a", "modified": 1370000000.10, "sortindex": 3, '
                    b'"payload": "\\u00e9"}, {"id": "b", "parentid": "p"}]')
    assert json.loads(body)[0]["payload"] == "é"


def test_ids_in_each_format():
    records = [{"id": "id1"}, {"id": "id2"}]
    assert formats.render_records(records, False, formats.JSON) == b'["id1", "id2"]'
    assert formats.render_records(records, False, formats.NEWLINES) == b'"id1"\n"id2"\n'
    assert formats.render_records(records, False, formats.WHOISI) == (
        struct.pack(">I", 5) + b'"id1"' + struct.pack(">I", 5) + b'"id2"')


def test_empty_lists():
    assert formats.render_records([], True, formats.JSON) == b"[]"
    assert formats.render_records([], True, formats.NEWLINES) == b""


def test_dumps_keeps_raw_timestamps_and_python_separators():
    text = formats.dumps({"modified": formats.timestamp_json(500), "failed": {"x": ["m"]},
                          "success": ["a"], "n": None, "f": 0.5})
    assert text == '{"modified": 5.00, "failed": {"x": ["m"]}, "success": ["a"], "n": null, "f": 0.5}'


@pytest.mark.parametrize("centis,text", [(137000000010, "1370000000.10"), (0, "0.00"),
                                         (5, "0.05"), (-150, "-1.50")])
def test_format_timestamp(centis, text):
    assert format_timestamp(centis) == text


@pytest.mark.parametrize("text,centis", [("1370000000.10", 137000000010), ("1.005", 100),
                                         ("1.015", 102), ("1e2", 10000), (" 7 ", 700)])
def test_parse_timestamp_rounds_half_even(text, centis):
    assert parse_timestamp(text) == centis


@pytest.mark.parametrize("text", ["", "abc", "nan", "inf", "-Infinity", "1,5", None])
def test_parse_timestamp_rejects(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)
