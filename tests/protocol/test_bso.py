"""Storage 1.5 BSO validation (reference §3.5, §3.6 known-bad payloads, §3.8.6 step 1)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.protocol.bso import (
    MAX_TTL,
    InvalidBSO,
    KnownBadPayload,
    is_known_bad_payload,
    is_valid_bso_id,
    parse_bso,
    parse_bso_list,
)
from syncserver.storage import ItemWrite

MAX = 1000


def reason(obj, **kwargs):
    with pytest.raises(InvalidBSO) as caught:
        parse_bso(obj, MAX, **kwargs)
    return caught.value.reason


def test_full_bso():
    assert parse_bso({"id": "a", "payload": "x", "sortindex": 5, "ttl": 60}, MAX) == \
        ItemWrite(id="a", payload="x", sortindex=5, ttl=60)


def test_absent_and_null_fields_are_not_sent():
    assert parse_bso({"id": "a"}, MAX) == ItemWrite(id="a")
    # test_create_bso_with_null_ttl: null means "not sent" (no expiry), as both servers do.
    assert parse_bso({"id": "a", "payload": None, "sortindex": None, "ttl": None}, MAX) == \
        ItemWrite(id="a")


def test_modified_and_collection_are_accepted_and_ignored():
    # test_meta_global_sanity, test_that_bsos_can_have_a_collection_field
    assert parse_bso({"id": "global", "payload": "p", "modified": 1234.56, "collection": "meta"},
                     MAX) == ItemWrite(id="global", payload="p")
    assert parse_bso({"id": "a", "modified": "junk", "collection": 7}, MAX) == ItemWrite(id="a")


@pytest.mark.parametrize("field", ["unexpected", "parentid", "predecessorid", "payload_size",
                                   "username", "Id"])
def test_any_other_field_is_invalid_even_null(field):
    assert reason({"id": "a", field: "x"}) == f"unknown field '{field}'"
    assert reason({"id": "a", field: None}) == f"unknown field '{field}'"


@pytest.mark.parametrize("value", [[], {}, [1], {"a": 1}])
def test_non_scalar_values_are_invalid(value):
    # test_handling_of_invalid_json_in_bso_uploads: an object with non-scalar fields.
    for field in ("id", "payload", "sortindex", "ttl", "modified", "collection"):
        assert reason({"id": "a", field: value}) == "invalid bso"


@pytest.mark.parametrize("value", ["notabso", 42, None, [], [{"id": "a"}], True])
def test_non_objects_are_invalid(value):
    assert reason(value) == "invalid bso"


@pytest.mark.parametrize("item_id", ["a", " ", "~", "x" * 64, "a/b", "{}", "with space",
                                     "".join(chr(c) for c in range(0x20, 0x60))])
def test_valid_ids(item_id):
    assert is_valid_bso_id(item_id)
    assert parse_bso({"id": item_id}, MAX).id == item_id


@pytest.mark.parametrize("item_id", ["", "x" * 65, "A\n", "\nA", "a\tb", "é", "\x7f", "a\x00",
                                     12, 1.5, True, None])
def test_invalid_ids(item_id):
    assert not is_valid_bso_id(item_id)
    assert reason({"id": item_id, "payload": "x"}) == "invalid id"


def test_put_url_id_wins_and_body_id_is_still_checked():
    assert parse_bso({"id": "other", "payload": "x"}, MAX, item_id="url").id == "url"
    assert parse_bso({"payload": "x"}, MAX, item_id="url").id == "url"
    assert reason({"id": "A\n"}, item_id="url") == "invalid id"
    assert reason({"id": 5}, item_id="url") == "invalid id"
    assert reason({}, item_id="x" * 65) == "invalid id"


def test_put_of_empty_object_is_valid():
    assert parse_bso({}, MAX, item_id="a") == ItemWrite(id="a")


@pytest.mark.parametrize("value", [0, 1, -1, 999_999_999, -999_999_999])
def test_sortindex_in_range(value):
    assert parse_bso({"id": "a", "sortindex": value}, MAX).sortindex == value


@pytest.mark.parametrize("value", [1_000_000_000, -1_000_000_000, 10 ** 30, "xxx", "2.6", "5",
                                   2.6, 2.0, True, False, float("inf")])
def test_sortindex_invalid(value):
    assert reason({"id": "a", "sortindex": value}) == "invalid sortindex"


@pytest.mark.parametrize("value", [0, 1, 31_536_000, 31_536_001, 94_608_000, MAX_TTL])
def test_ttl_kept_up_to_the_bound(value):
    # Forms use 3 years (94,608,000 s): honoured, unlike the Python server's one-year cut.
    assert parse_bso({"id": "a", "ttl": value}, MAX).ttl == value


@pytest.mark.parametrize("value", [MAX_TTL + 1, 2_100_000_000, 10 ** 20])
def test_ttl_past_the_bound_is_ignored(value):
    assert parse_bso({"id": "a", "ttl": value, "payload": "p"}, MAX) == ItemWrite(id="a",
                                                                                 payload="p")


@pytest.mark.parametrize("value", [-1, -31_536_000, "60", "xxx", 1.5, 60.0, True])
def test_ttl_invalid(value):
    assert reason({"id": "a", "ttl": value}) == "invalid ttl"


def test_payload_must_be_a_string():
    for value in (42, 1.5, True):
        assert reason({"id": "a", "payload": value}) == "payload not a string"
    assert parse_bso({"id": "a", "payload": ""}, MAX).payload == ""


def test_payload_size_counts_utf8_bytes_inclusively():
    assert parse_bso({"id": "a", "payload": "x" * MAX}, MAX).payload == "x" * MAX
    assert reason({"id": "a", "payload": "x" * (MAX + 1)}) == "payload too large"
    # 334 three-byte characters = 1002 bytes, though only 334 characters.
    assert reason({"id": "a", "payload": "€" * 334}) == "payload too large"
    assert parse_bso({"id": "a", "payload": "€" * 333}, MAX).payload == "€" * 333


def test_payload_with_nul_is_invalid():
    assert reason({"id": "a", "payload": "a\x00b"}) == "invalid payload"


def test_first_problem_in_python_order_is_reported():
    assert reason({"id": "A\n", "bogus": 1}) == "unknown field 'bogus'"
    assert reason({"id": "A\n", "sortindex": "x"}) == "invalid id"
    assert reason({"id": "a", "sortindex": "x", "ttl": -1}) == "invalid sortindex"
    assert reason({"id": "a", "ttl": -1, "payload": 5}) == "invalid ttl"


def test_known_bad_payloads_only_in_crypto():
    # test_rejection_of_known_bad_payloads
    bad = json.dumps({"ciphertext": "x", "IV": "AAAAAAAAAAAAAAAAAAAAAA==", "hmac": "y"})
    assert is_known_bad_payload("crypto", bad)
    assert is_known_bad_payload("crypto", '{"IV":"AAAAAAAAAAAAAAAAAAAAAA=="}')
    assert not is_known_bad_payload("bookmarks", bad)
    assert not is_known_bad_payload("crypto", bad.replace("AAAA==", "AAAB=="))
    assert not is_known_bad_payload("crypto", None)


def test_parse_bso_list_splits_valid_and_failed():
    items, failed = parse_bso_list(
        [{"id": "a", "payload": "x"}, {"id": "b", "sortindex": "xxx"},
         {"id": "", "payload": "x"}, {"id": "c", "unexpected": 1}, {"id": "A\n"}],
        MAX, "bookmarks")
    assert items == [ItemWrite(id="a", payload="x")]
    assert failed == {"b": "invalid sortindex", "": "invalid id",
                      "c": "unknown field 'unexpected'", "A\n": "invalid id"}


def test_parse_bso_list_refuses_a_known_bad_payload_whole():
    bad = {"id": "keys", "payload": '{"IV": "AAAAAAAAAAAAAAAAAAAAAA=="}'}
    with pytest.raises(KnownBadPayload) as caught:
        parse_bso_list([{"id": "a", "payload": "x"}, bad], MAX, "crypto")
    assert caught.value.item_id == "keys"
    items, failed = parse_bso_list([bad], MAX, "bookmarks")
    assert [item.id for item in items] == ["keys"] and failed == {}


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
bso_like = st.dictionaries(
    st.sampled_from(["id", "payload", "sortindex", "ttl", "modified", "collection", "x"]) | st.text(),
    json_values, max_size=6)


@given(st.one_of(json_values, bso_like), st.none() | st.text(max_size=70))
def test_any_value_gives_an_item_or_invalid_bso(value, item_id):
    try:
        item = parse_bso(value, MAX, item_id=item_id)
    except InvalidBSO as error:
        assert error.reason
        return
    assert is_valid_bso_id(item.id)
    assert item.payload is None or len(item.payload.encode("utf-8", "surrogatepass")) <= MAX
    assert item.sortindex is None or -999_999_999 <= item.sortindex <= 999_999_999
    assert item.ttl is None or 0 <= item.ttl <= MAX_TTL
    assert set(value) <= {"id", "payload", "sortindex", "ttl", "modified", "collection"}
