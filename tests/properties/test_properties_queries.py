"""Collection queries (reference §2.8) against a Python model of the same filters.

A collection of items written one by one (so each has its own ``modified``)
is queried with random combinations of ``ids``, ``parentid``,
``predecessorid``, ``newer``, ``older``, ``index_above``, ``index_below``,
``sort``, ``limit``, ``offset`` and ``full``; the answer must be exactly what
the rules select. DELETE with the same filters removes exactly what a GET
would have returned (the storage interface's contract), and moves the
collection's timestamp in info/collections only when something went.
"""

import itertools
import json
import urllib.parse
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import check_response

SETTINGS = dict(deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CENT = Decimal("0.01")
SORTINDEXES = [5, -3, 100, 0, 42, 7, -50, 999999999, -999999999, 13, 1, 2]
PARENTS = ["a", "b", "c"]
PREDECESSORS = ["x", "y"]
_counter = itertools.count()


def write_items(sync_app, account, collection, count):
    """PUT ``count`` items one at a time; return their records as the server should give them."""
    items = []
    for i in range(count):
        item_id = f"i{i:02d}"
        wbo = {"payload": f"payload {i}", "sortindex": SORTINDEXES[i % len(SORTINDEXES)],
               "parentid": PARENTS[i % 3], "predecessorid": PREDECESSORS[i % 2]}
        response = sync_app.storage(account, "PUT", f"storage/{collection}/{item_id}", wbo)
        check_response(response)
        assert response.status_int == 200, response
        items.append(dict(wbo, id=item_id, modified=Decimal(response.body.decode())))
    stamps = [item["modified"] for item in items]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    return items


@pytest.fixture(scope="module")
def account(sync_app):
    return sync_app.register("queries")


@pytest.fixture(scope="module")
def dataset(sync_app, account):
    return write_items(sync_app, account, "q", 12)


def _timestamp_values(draw_from):
    """Values around each item's stamp: always as many, so that hypothesis draws the same
    way whatever the stamps were (some may repeat when two stamps are 0.01 apart)."""
    stamps = [item["modified"] for item in draw_from]
    values = [str(stamp + delta) for stamp in stamps
              for delta in (Decimal("-0.01"), Decimal(0), Decimal("0.01"), Decimal("0.005"),
                            Decimal("-0.005"), Decimal("0.015"))]
    return values + ["0", "-1", "1e12", str(stamps[0] - 100), str(stamps[-1] + 100)]


def queries(items, for_delete=False):
    ids = [item["id"] for item in items] + ["nope", "", "i99"]
    values = {
        "ids": st.lists(st.sampled_from(ids), min_size=0, max_size=5).map(",".join),
        "parentid": st.sampled_from(PARENTS + ["z", ""]),
        "predecessorid": st.sampled_from(PREDECESSORS + ["z"]),
        "newer": st.sampled_from(_timestamp_values(items)),
        "older": st.sampled_from(_timestamp_values(items)),
        "index_above": st.one_of(st.sampled_from(SORTINDEXES),
                                 st.integers(-1000, 1000)).map(str) | st.sampled_from(
                                     ["5.5", "-3.5", "1e3", "-1e9", "0.0"]),
        "index_below": st.one_of(st.sampled_from(SORTINDEXES),
                                 st.integers(-1000, 1000)).map(str) | st.sampled_from(
                                     ["5.5", "-3.5", "1e3", "1e9", "-0.0"]),
        "limit": st.integers(-2, 14).map(str),
        "offset": st.integers(-2, 14).map(str),
        "sort": st.sampled_from(["oldest", "newest", "index", "bogus"]),
        "full": st.sampled_from(["1", "0", ""]),
    }
    if for_delete:
        values.pop("full")
    keys = st.lists(st.sampled_from(sorted(values)), unique=True, max_size=6)
    return keys.flatmap(lambda chosen: st.fixed_dictionaries({k: values[k] for k in chosen}))


def select(items, query):
    """What the reference rules select, in order when the order is defined.

    Returns (records, ordered, count_only): ``ordered`` says the order is
    specified (a sort was asked); ``count_only`` says only the number of
    records is determined (a limit or offset without a defined order).
    """
    chosen = list(items)
    if "ids" in query:
        wanted = set(query["ids"].split(","))
        chosen = [i for i in chosen if i["id"] in wanted]
    for name in ("parentid", "predecessorid"):
        if name in query:
            chosen = [i for i in chosen if i[name] == query[name]]
    if "newer" in query:
        newer = Decimal(query["newer"]).quantize(CENT, ROUND_HALF_EVEN)
        chosen = [i for i in chosen if i["modified"] > newer]
    if "older" in query:
        older = Decimal(query["older"]).quantize(CENT, ROUND_HALF_EVEN)
        chosen = [i for i in chosen if i["modified"] < older]
    if "index_above" in query:
        chosen = [i for i in chosen if i["sortindex"] > float(query["index_above"])]
    if "index_below" in query:
        chosen = [i for i in chosen if i["sortindex"] < float(query["index_below"])]
    sort = query.get("sort")
    ordered = sort in ("oldest", "newest", "index")
    if sort == "oldest":
        chosen.sort(key=lambda i: i["modified"])
    elif sort == "newest":
        chosen.sort(key=lambda i: i["modified"], reverse=True)
    elif sort == "index":
        chosen.sort(key=lambda i: i["sortindex"], reverse=True)
    paged = False
    if "limit" in query:
        limit = int(query["limit"])
        offset = int(query.get("offset", "0"))
        if offset > 0:
            chosen = chosen[offset:]
            paged = True
        if limit > 0:
            paged = paged or len(chosen) > limit
            chosen = chosen[:limit]
    return chosen, ordered, paged and not ordered


def encode(query):
    return urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


def ids_of(records):
    return [r["id"] if isinstance(r, dict) else r for r in records]


@settings(max_examples=200, **SETTINGS)
@given(data=st.data())
def test_get_collection_queries_follow_the_rules(sync_app, account, dataset, data):
    query = data.draw(queries(dataset))
    response = sync_app.storage(account, "GET", f"storage/q?{encode(query)}")
    check_response(response)
    assert response.status_int == 200, (query, response)
    answer = json.loads(response.body, parse_float=Decimal)
    assert response.headers.get("X-Weave-Records") == str(len(answer))
    expected, ordered, count_only = select(dataset, query)
    full = bool(query.get("full"))
    if full:
        assert all(isinstance(record, dict) for record in answer), answer
        by_id = {item["id"]: item for item in dataset}
        for record in answer:
            assert record == by_id[record["id"]], record
    else:
        assert all(isinstance(record, str) for record in answer), answer
    got = ids_of(answer)
    want = ids_of(expected)
    assert len(got) == len(set(got)), f"duplicates in {got}"
    if ordered:
        assert got == want, query
    elif count_only:
        all_matching, _, _ = select(dataset, {k: v for k, v in query.items()
                                              if k not in ("limit", "offset")})
        assert len(got) == len(want) and set(got) <= set(ids_of(all_matching)), query
    else:
        assert sorted(got) == sorted(want), query


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_delete_collection_queries_remove_what_a_get_would_return(sync_app, account, data):
    collection = f"dq{next(_counter)}"
    items = write_items(sync_app, account, collection, 8)
    query = data.draw(queries(items, for_delete=True))
    info_before = json.loads(sync_app.storage(account, "GET", "info/collections").body,
                             parse_float=Decimal)
    response = sync_app.storage(account, "DELETE", f"storage/{collection}?{encode(query)}")
    check_response(response)
    assert response.status_int == 200, (query, response)
    deleted_at = Decimal(response.body.decode())
    assert Decimal(response.headers["X-Weave-Timestamp"]) == deleted_at

    remaining = ids_of(json.loads(
        sync_app.storage(account, "GET", f"storage/{collection}").body))
    expected, _ordered, count_only = select(items, query)
    gone = set(ids_of(items)) - set(remaining)
    if count_only:
        assert len(gone) == len(expected), query
    else:
        assert gone == set(ids_of(expected)), query

    info = json.loads(sync_app.storage(account, "GET", "info/collections").body,
                      parse_float=Decimal)
    if gone:
        assert info.get(collection) == deleted_at, (query, info.get(collection))
        assert deleted_at > info_before[collection]
    else:
        assert info.get(collection) == info_before[collection], query


@pytest.mark.parametrize("name, value", [
    ("newer", "abc"), ("older", "x"), ("newer", "nan"), ("older", "inf"), ("index_above", "y"),
    ("index_below", "nan"), ("limit", "2.0"), ("limit", "x"), ("offset", "1.5"),
    ("newer", "1e400"),
])
def test_bad_query_values_are_400(sync_app, account, dataset, name, value):
    for method in ("GET", "DELETE"):
        if method == "DELETE" and name == "full":
            continue
        response = sync_app.storage(account, method, f"storage/q?limit=1&{name}={value}")
        check_response(response)
        assert response.status_int == 400, (method, name, value, response)
    # Nothing was deleted by the refused DELETEs.
    response = sync_app.storage(account, "GET", "storage/q")
    assert sorted(json.loads(response.body)) == sorted(item["id"] for item in dataset)


def test_reference_pagination_example(sync_app, account):
    """§2.8: sort=index&limit=2&offset=2 on sortindexes 1..4 gives ["2", "1"]."""
    collection = f"page{next(_counter)}"
    for index in range(1, 5):
        response = sync_app.storage(account, "PUT", f"storage/{collection}/{index}",
                                    {"payload": "p", "sortindex": index})
        assert response.status_int == 200
    response = sync_app.storage(account, "GET", f"storage/{collection}?sort=index&limit=2&offset=2")
    assert json.loads(response.body) == ["2", "1"]
