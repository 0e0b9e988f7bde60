"""Storage 1.5 collection query strings (reference §3.9, §3.8.8 ids, SS-7)."""

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from webob import Request, exc
from webob.multidict import MultiDict

from syncserver.protocol.query15 import (
    CollectionQuery15,
    parse_collection_query,
    parse_delete_ids,
    request_params,
)
from syncserver.storage import ItemQuery


def parse(**params):
    return parse_collection_query(MultiDict(params))


def parse_url(query_string):
    return parse_collection_query(request_params(Request.blank("/c?" + query_string)))


def bad(call, *args, **kwargs):
    with pytest.raises(exc.HTTPBadRequest) as caught:
        call(*args, **kwargs)
    assert caught.value.status_code == 400
    assert caught.value.content_type == "application/json"
    assert caught.value.body == b"1"


def test_empty_query_reads_everything_newest_first():
    assert parse() == CollectionQuery15(query=ItemQuery(sort="newest"))


def test_all_parameters():
    query = parse(ids="a, b ,a", newer="1700000000.1", older="1700000000.25", sort="oldest",
                  limit="10", full="1")
    assert query == CollectionQuery15(
        query=ItemQuery(ids=("a", "b"), newer=170000000010, older=170000000025, sort="oldest",
                        limit=11),
        full=True, limit=10)


def test_unknown_and_1_1_parameters_are_ignored():
    # test_weird_args; the 1.1 filters are unknown parameters in 1.5.
    assert parse(blabla="1", index_above="5", index_below="x", parentid="p",
                 predecessorid="q", client="FxHome") == parse()


def test_last_repeated_value_wins():
    params = MultiDict([("sort", "index"), ("sort", "oldest"), ("limit", "x"), ("limit", "3")])
    query = parse_collection_query(params)
    assert query.query.sort == "oldest" and query.limit == 3


# --- ids ---------------------------------------------------------------------------

def test_ids_are_url_decoded_and_trimmed():
    assert parse_url("ids=a%20b,c%2Fd,%20e%20").query.ids == ("a b", "c/d", "e")


def test_up_to_100_ids():
    ids = ",".join(str(n) for n in range(100))
    assert len(parse(ids=ids).query.ids) == 100
    bad(parse, ids=ids + ",100")
    bad(parse, ids="a" + "," * 5000)


@pytest.mark.parametrize("ids", ["", ",", "a,,b", "a,", ",a", " ", "x" * 65, "a,é", "a,\x01"])
def test_empty_or_invalid_ids_are_400(ids):
    # SS-7: an empty list must not turn into "no filter".
    bad(parse, ids=ids)


# --- newer / older -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["newer", "older"])
@pytest.mark.parametrize("value", ["-1", "-0.01", "nan", "NaN", "inf", "Infinity", "abc", "",
                                   "1e3", "1,5", "0x10", "１２"])
def test_bad_timestamps_are_400(name, value):
    bad(parse, **{name: value})


def test_timestamps_any_non_negative_decimal():
    assert parse(newer="0").query.newer == 0
    assert parse(newer="1700000000").query.newer == 170000000000
    assert parse(newer="1700000000.1").query.newer == 170000000010
    assert parse(older="1700000000.10").query.older == 170000000010


def test_timestamps_keep_strict_comparisons_exact():
    # test_strict_newer: modified > newer, modified < older, on whole centiseconds.
    assert parse(newer="1.005").query.newer == 100   # modified > 1.005  <=>  modified > 1.00
    assert parse(older="1.001").query.older == 101   # modified < 1.001  <=>  modified < 1.01
    assert parse(older="1.0000").query.older == 100


# --- sort, limit, full -----------------------------------------------------------------

@pytest.mark.parametrize("sort", ["newest", "oldest", "index"])
def test_sorts(sort):
    assert parse(sort=sort).query.sort == sort


@pytest.mark.parametrize("sort", ["", "NEWEST", "sideways", "depthindex"])
def test_other_sorts_are_400(sort):
    bad(parse, sort=sort)


def test_limit_fetches_one_more_row():
    assert parse(limit="0") == CollectionQuery15(query=ItemQuery(sort="newest", limit=1), limit=0)
    assert parse(limit=" 7 ").limit == 7
    huge = parse(limit="9" * 30)
    assert huge.limit == 1_000_000_000 and huge.query.limit == 1_000_000_001


@pytest.mark.parametrize("limit", ["-1", "1.5", "abc", "", "+5", "1e3", "5_0", "9" * 41])
def test_bad_limits_are_400(limit):
    bad(parse, limit=limit)


@pytest.mark.parametrize("query_string", ["full", "full=", "full=0", "full=false", "full=1"])
def test_full_counts_by_presence(query_string):
    assert parse_url(query_string).full
    assert not parse_url("fully=1").full


# --- offset ---------------------------------------------------------------------------

def test_offset_tokens_by_sort():
    newest = parse(offset="1700000000100:3")
    assert newest.query.offset == 3 and newest.modified_at_most == 170000000010
    assert newest.modified_at_least is None
    oldest = parse(offset="1700000000100:0", sort="oldest")
    assert oldest.query.offset is None and oldest.modified_at_least == 170000000010
    index = parse(offset="40", sort="index")
    assert index.query.offset == 40 and index.modified_at_most is None


@pytest.mark.parametrize("params", [
    {"offset": ""}, {"offset": "abc"}, {"offset": "-1"}, {"offset": "1:2:3"},
    {"offset": "1.5:2"}, {"offset": "10:2", "sort": "index"},
    {"offset": "1000:1", "newer": "2"}, {"offset": "3000:1", "older": "2"},
])
def test_bad_offsets_are_400(params):
    bad(parse, **params)


def test_offset_bound_may_equal_newer_or_older():
    assert parse(offset="2000:1", newer="2").modified_at_most == 200
    assert parse(offset="2000:1", older="2", sort="oldest").modified_at_least == 200


# --- DELETE ?ids= ---------------------------------------------------------------------

def test_delete_ids():
    assert parse_delete_ids(MultiDict()) is None
    assert parse_delete_ids(MultiDict(ids="a,b,a", newer="1", limit="x")) == ("a", "b")


def test_that_batch_deletes_are_limited_to_max_number_of_ids():
    ids = ",".join(str(n) for n in range(101))
    bad(parse_delete_ids, MultiDict(ids=ids))
    assert len(parse_delete_ids(MultiDict(ids=ids.rsplit(",", 1)[0]))) == 100


@pytest.mark.parametrize("ids", ["", ",", "a,,b", "x" * 65])
def test_delete_with_empty_or_invalid_ids_is_400(ids):
    # SS-7: DELETE ?ids= must never delete the whole collection.
    bad(parse_delete_ids, MultiDict(ids=ids))


# --- The query string itself ------------------------------------------------------------

@pytest.mark.parametrize("query_string", ["ids=%FF", "%FF=1", "newer=%C3"])
def test_query_string_not_utf8_is_400(query_string):
    bad(request_params, Request.blank("/c?" + query_string))


query_pieces = st.lists(st.sampled_from(list("abc019,:.-+=&% é") + ["%FF", "%2C", "%3A", "%00"]),
                        max_size=12).map("".join)
names = st.sampled_from(["ids", "newer", "older", "full", "limit", "offset", "sort", "batch",
                         "x", ""])


@given(st.lists(st.tuples(names, query_pieces), max_size=6), query_pieces)
def test_any_query_string_parses_or_is_400_1(pairs, raw):
    query_string = "&".join(f"{name}={value}" for name, value in pairs) + "&" + raw
    for make in (lambda params: parse_collection_query(params), parse_delete_ids):
        try:
            make(request_params(Request.blank("/c?" + query_string)))
        except exc.HTTPBadRequest as error:
            assert error.body == b"1"


@given(st.dictionaries(st.sampled_from(["ids", "newer", "older", "limit", "offset", "sort"]),
                       st.text(max_size=20)))
def test_any_values_parse_or_are_400_1(params):
    try:
        query = parse_collection_query(MultiDict(params))
    except exc.HTTPBadRequest as error:
        assert error.body == b"1"
        return
    assert query.query.sort in ("newest", "oldest", "index")
    assert query.limit is None or query.query.limit == query.limit + 1
    assert query.query.ids is None or 1 <= len(query.query.ids) <= 100
    encoded = urllib.parse.urlencode(params)
    assert parse_url(encoded) == query
