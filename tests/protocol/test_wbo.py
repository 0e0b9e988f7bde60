"""WBO validation: what clients may send, and the messages of POST failures."""

import pytest

from syncserver.protocol.wbo import InvalidWBO, is_valid_item_id, parse_wbo

MAX = 256 * 1024


def reason(obj, **kwargs):
    with pytest.raises(InvalidWBO) as caught:
        parse_wbo(obj, MAX, **kwargs)
    return caught.value.reason


def test_full_wbo_is_kept():
    item = parse_wbo({"id": "abc", "payload": "x", "sortindex": 5, "parentid": "p",
                      "predecessorid": "q", "ttl": 60}, MAX)
    assert (item.id, item.payload, item.sortindex, item.parentid, item.predecessorid, item.ttl) == (
        "abc", "x", 5, "p", "q", 60)


def test_server_owned_and_unknown_fields_are_dropped():
    item = parse_wbo({"id": "a", "modified": 1, "username": "x", "collection": "c",
                      "payload_size": 9, "other": 1}, MAX)
    assert item.payload is None and item.ttl is None and item.sortindex is None


def test_null_means_not_sent():
    item = parse_wbo({"id": "a", "payload": None, "sortindex": None}, MAX)
    assert item.payload is None and item.sortindex is None


@pytest.mark.parametrize("obj", [[], "x", 3, None, {"id": "a", "x": [1]}, {"id": "a", "x": {}}])
def test_non_objects_and_nested_values_are_invalid(obj):
    assert reason(obj) == "invalid wbo"


@pytest.mark.parametrize("value", ["", "a" * 65, "a/b", "é", "\n", True, [1]])
def test_invalid_ids(value):
    assert reason({"id": value}) in ("invalid id", "invalid wbo")


def test_numeric_ids_become_text():
    assert parse_wbo({"id": 33}, MAX).id == "33"


@pytest.mark.parametrize("item_id", ["{9e4c1b2a-aaaa}", "#", "?", "~", "a b", "x" * 64, "a\\b"])
def test_valid_unusual_ids(item_id):
    assert is_valid_item_id(item_id)
    assert parse_wbo({"id": item_id}, MAX).id == item_id


def test_url_id_wins_but_body_id_is_validated():
    assert parse_wbo({"id": "other"}, MAX, item_id="url").id == "url"
    assert reason({"id": "x" * 65}, item_id="url") == "invalid id"


@pytest.mark.parametrize("value,expected", [
    (5, 5), (5.9, 5), (-5.5, -5), ("7", 7), ("5.5", 5), (999999999, 999999999)])
def test_sortindex_conversion(value, expected):
    assert parse_wbo({"id": "a", "sortindex": value}, MAX).sortindex == expected


@pytest.mark.parametrize("value", [1000000000, -1000000000, "abc", "nan", "inf", True, "1e400"])
def test_bad_sortindex(value):
    assert reason({"id": "a", "sortindex": value}) == "invalid sortindex"


@pytest.mark.parametrize("value,expected", [(0, 0), (3.7, 3), ("12", 12), (31536000, 31536000)])
def test_ttl_conversion(value, expected):
    assert parse_wbo({"id": "a", "ttl": value}, MAX).ttl == expected


@pytest.mark.parametrize("value", [-1, 31536001, "3.5", "x", True, float("inf")])
def test_bad_ttl(value):
    assert reason({"id": "a", "ttl": value}) == "invalid ttl"


def test_payload_rules():
    assert reason({"id": "a", "payload": 5}) == "payload not a string"
    assert parse_wbo({"id": "a", "payload": ""}, MAX).payload == ""
    assert parse_wbo({"id": "a", "payload": "x" * MAX}, MAX).payload
    assert reason({"id": "a", "payload": "x" * (MAX + 1)}) == "payload too large"
    # The limit is in UTF-8 bytes, not characters.
    assert reason({"id": "a", "payload": "é" * (MAX // 2 + 1)}) == "payload too large"


def test_parentid_limits():
    assert parse_wbo({"id": "a", "parentid": "menu"}, MAX).parentid == "menu"
    assert reason({"id": "a", "parentid": "x" * 65}) == "invalid parentid"
    assert reason({"id": "a", "predecessorid": "é"}) == "invalid predecessorid"


def test_nul_in_payload_is_refused_on_every_database():
    assert reason({"id": "a", "payload": "a\x00b"}) == "invalid payload"
