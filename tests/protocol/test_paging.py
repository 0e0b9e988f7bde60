"""Storage 1.5 offset tokens (reference §3.9), checked against a brute-force pager."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webob import exc
from webob.multidict import MultiDict

from syncserver.protocol.paging import PageOffset, decode_offset, encode_offset, next_offset
from syncserver.protocol.query15 import parse_collection_query
from syncserver.protocol.timestamps import format_timestamp


def bad(token, sort="newest", newer=None, older=None):
    with pytest.raises(exc.HTTPBadRequest) as caught:
        decode_offset(token, sort, newer, older)
    assert caught.value.body == b"1"


# --- Decoding ---------------------------------------------------------------------------

def test_timestamp_tokens_are_milliseconds():
    assert decode_offset("1700000000120:2", "newest", None, None) == \
        PageOffset(skip=2, modified_at_most=170000000012)
    assert decode_offset("1700000000120:0", "oldest", None, None) == \
        PageOffset(skip=0, modified_at_least=170000000012)
    assert decode_offset("1700000000120:0", None, None, None).modified_at_most == 170000000012


def test_foreign_milliseconds_convert_to_the_same_comparison():
    # modified <= 1.005 s  <=>  modified <= 1.00 s;  modified >= 1.005 s  <=>  modified >= 1.01 s
    assert decode_offset("1005:0", "newest", None, None).modified_at_most == 100
    assert decode_offset("1005:0", "oldest", None, None).modified_at_least == 101


def test_plain_integers():
    assert decode_offset("25", "index", None, None) == PageOffset(skip=25)
    assert decode_offset("25", "newest", None, None) == PageOffset(skip=25)
    assert decode_offset("0", "oldest", None, None) == PageOffset()
    assert decode_offset("9" * 40, "index", None, None).skip == 1_000_000_000


@pytest.mark.parametrize("token", ["", "x", "-1", "1:", ":1", "1:-1", "1.5:2", "1:2:3", " 1",
                                   "1 ", "0x1", "１", "9" * 41, "1:" + "9" * 41])
def test_garbage_is_400(token):
    bad(token)


def test_bounds_outside_newer_and_older_are_400():
    bad("999:0", newer=100)
    assert decode_offset("1000:0", "newest", 100, None).modified_at_most == 100
    bad("2001:0", older=200, sort="oldest")
    assert decode_offset("2000:0", "oldest", None, 200).modified_at_least == 200


def test_index_takes_no_bound():
    bad("1000:2", sort="index")


# --- Encoding ---------------------------------------------------------------------------

def rows(*modified):
    return [{"id": f"{n:03d}", "modified": stamp} for n, stamp in enumerate(modified)]


def query(**params):
    return parse_collection_query(MultiDict(params))


def test_no_token_when_nothing_follows():
    q = query(limit="3")
    assert next_offset(rows(5, 4, 3), q, 3) is None
    assert next_offset(rows(5, 4), q, 3) is None
    assert next_offset(rows(5, 4, 3, 2), query(), None) is None


def test_token_counts_the_items_sharing_the_last_timestamp():
    assert next_offset(rows(9, 8, 8, 7), query(limit="3"), 3) == "80:2"
    assert next_offset(rows(9, 8, 7, 7), query(limit="3"), 3) == "70:1"
    assert next_offset(rows(1, 2, 2, 2), query(limit="3", sort="oldest"), 3) == "20:2"


def test_a_page_all_at_the_previous_bound_adds_the_previous_skip():
    q = query(limit="2", offset="80:3")
    assert next_offset(rows(8, 8, 8), q, 2) == "80:5"
    # Same shape, a lower timestamp: the previous skip was at another bound.
    assert next_offset(rows(7, 7, 7), q, 2) == "70:2"


def test_index_tokens_are_plain_counts():
    assert next_offset(rows(1, 2, 3), query(limit="2", sort="index"), 2) == "2"
    assert next_offset(rows(1, 2, 3), query(limit="2", sort="index", offset="10"), 2) == "12"


def test_records_without_modified_count_on_from_the_same_bound():
    ids_only = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert next_offset(ids_only, query(limit="2"), 2) == "2"
    assert next_offset(ids_only, query(limit="2", offset="90:1"), 2) == "90:3"


def test_a_plain_skip_under_a_timestamp_sort_continues_as_a_count():
    assert next_offset(rows(8, 8, 8), query(limit="2", offset="4"), 2) == "6"


def test_limit_zero_points_at_the_same_place():
    assert next_offset(rows(5), query(limit="0"), 0) == "0"
    assert next_offset(rows(5), query(limit="0", offset="50:2"), 0) == "50:2"


def test_encode_offset():
    assert encode_offset(3) == "3"
    assert encode_offset(3, 170000000012) == "1700000000120:3"


# --- Paging end to end, against brute force -------------------------------------------------

def storage_read(records, collection_query, ids_only=False):
    """What a correct storage returns for the query: filters, bound, order (id breaks ties), skip."""
    q = collection_query.query
    at_most, at_least = collection_query.modified_at_most, collection_query.modified_at_least
    found = [r for r in records
             if (q.ids is None or r["id"] in q.ids)
             and (q.newer is None or r["modified"] > q.newer)
             and (q.older is None or r["modified"] < q.older)
             and (at_most is None or r["modified"] <= at_most)
             and (at_least is None or r["modified"] >= at_least)]
    if q.sort == "oldest":
        found.sort(key=lambda r: (r["modified"], r["id"]))
    elif q.sort == "index":
        found.sort(key=lambda r: (-r["sortindex"], r["id"]))
    else:
        found.sort(key=lambda r: (r["modified"], r["id"]), reverse=True)
    found = found[q.offset or 0:]
    if q.limit is not None:
        found = found[:q.limit]
    return [{"id": r["id"]} for r in found] if ids_only else found


def page_through(records, params, limits, ids_only=False):
    """Follow X-Weave-Next-Offset as desktop Firefox does; ``limits`` may change per page."""
    returned, token = [], None
    for page_number in range(len(records) + 2):
        page_params = dict(params, limit=str(limits[page_number % len(limits)]))
        if token is not None:
            page_params["offset"] = token
        parsed = parse_collection_query(MultiDict(page_params))
        fetched = storage_read(records, parsed, ids_only)
        returned.extend(fetched[:parsed.limit])
        token = next_offset(fetched, parsed, parsed.limit)
        if token is None:
            return returned
    raise AssertionError("paging did not end")


stamps = st.integers(min_value=0, max_value=6).map(lambda n: 170000000000 + n * 7)
record_lists = st.lists(st.tuples(stamps, st.integers(-2, 2)), max_size=25).map(
    lambda pairs: [{"id": f"id{n:02d}", "modified": stamp, "sortindex": index}
                   for n, (stamp, index) in enumerate(pairs)])


@settings(max_examples=300)
@given(records=record_lists, sort=st.sampled_from([None, "newest", "oldest", "index"]),
       newer=st.none() | stamps, older=st.none() | stamps,
       limits=st.lists(st.integers(1, 6), min_size=1, max_size=4), ids_only=st.booleans())
def test_paging_returns_every_record_once_in_order(records, sort, newer, older, limits,
                                                   ids_only):
    params = {"full": "1"}
    if sort is not None:
        params["sort"] = sort
    if newer is not None:
        params["newer"] = format_timestamp(newer)
    if older is not None:
        params["older"] = format_timestamp(older)
    everything = storage_read(records, parse_collection_query(MultiDict(params)), ids_only)
    assert page_through(records, params, limits, ids_only) == everything


def test_pagination_with_newer_and_sort_by_oldest():
    # The reference's named case: twelve items written four at a time (three timestamps).
    records = [{"id": f"{n:02d}", "modified": 170000000000 + (n // 4) * 100, "sortindex": 0}
               for n in range(12)]
    for limit in (2, 3, 4, 5, 6):
        for last in (3, 7, 11):
            newer = format_timestamp(records[last]["modified"])
            items = page_through(records, {"full": "1", "sort": "oldest", "newer": newer},
                                 [limit])
            assert sorted(int(item["id"]) for item in items) == list(range(last + 1, 12))
            stamps_seen = [item["modified"] for item in items]
            assert stamps_seen == sorted(stamps_seen)


def test_pagination_with_older_and_sort_by_newest():
    records = [{"id": f"{n:02d}", "modified": 170000000000 + (n // 4) * 100, "sortindex": 0}
               for n in range(12)]
    for limit in (2, 3, 4, 5, 6):
        for first in (0, 4, 8):
            older = format_timestamp(records[first]["modified"])
            items = page_through(records, {"full": "1", "sort": "newest", "older": older},
                                 [limit])
            assert sorted(int(item["id"]) for item in items) == list(range(first))
            stamps_seen = [item["modified"] for item in items]
            assert stamps_seen == sorted(stamps_seen, reverse=True)


def test_a_bound_keeps_pages_right_while_newer_items_arrive():
    """Items written between pages (newer than the first page) neither repeat nor shift pages."""
    records = [{"id": f"{n:02d}", "modified": 100 + n // 2, "sortindex": 0} for n in range(10)]
    first = parse_collection_query(MultiDict(limit="3", full="1"))
    fetched = storage_read(records, first)
    token = next_offset(fetched, first, 3)
    records += [{"id": "new1", "modified": 200, "sortindex": 0},
                {"id": "new2", "modified": 200, "sortindex": 0}]
    rest = page_through(records, {"full": "1", "offset": token}, [3])
    # page_through adds its own first page: with the token passed it continues instead.
    ids = [r["id"] for r in fetched[:3]] + [r["id"] for r in rest]
    assert ids == [f"{n:02d}" for n in reversed(range(10))]
