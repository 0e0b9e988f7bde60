"""Valid WBOs round-trip, batches report every valid id, and writes follow a simple model.

- PUT of a random valid WBO, then GET: the same payload, sortindex, parentid,
  predecessorid; ``modified`` equals the PUT's answer and X-Weave-Timestamp.
- POST of a random mix of valid and invalid WBOs: every valid id in
  ``success`` (in order), every invalid one in ``failed``, and the collection
  then holds exactly the valid ones.
- Any sequence of PUTs, POSTs and DELETEs (partial objects included) leaves
  the collection as a dictionary model predicts: fields not sent keep their
  stored values, ``modified`` changes only when a payload is written.
"""

import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    ID_ALPHABET,
    PRINTABLE_ASCII,
    check_response,
    quote_segment,
    reference_ids,
    valid_ids,
    valid_payloads,
    valid_sortindexes,
)

_counter = itertools.count()

FIELDS = ("payload", "sortindex", "parentid", "predecessorid")
SETTINGS = dict(deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fresh_collection(prefix):
    return f"{prefix}{next(_counter)}"


@pytest.fixture(scope="module")
def account(sync_app):
    return sync_app.register("roundtrip")


def decode(response):
    return json.loads(response.body, parse_float=Decimal)


def header_timestamp(response):
    return Decimal(response.headers["X-Weave-Timestamp"])


valid_wbos = st.fixed_dictionaries(
    {},
    optional={"payload": valid_payloads, "sortindex": valid_sortindexes,
              "parentid": reference_ids, "predecessorid": reference_ids,
              "ttl": st.one_of(st.integers(min_value=3600, max_value=31536000),
                               st.just(31536000))})

# Values the protocol accepts and converts (reference §2.5): numbers as strings, floats.
convertible_sortindexes = st.one_of(
    valid_sortindexes.map(lambda n: (n, n)),
    valid_sortindexes.map(lambda n: (str(n), n)),
    st.floats(min_value=-999_999_999.0, max_value=999_999_999.0).map(lambda f: (f, int(f))),
)


@settings(max_examples=150, **SETTINGS)
@given(item_id=valid_ids, wbo=valid_wbos, body_id=st.booleans())
def test_put_then_get_round_trips(sync_app, account, item_id, wbo, body_id):
    collection = fresh_collection("rt")
    body = dict(wbo, id=item_id) if body_id else dict(wbo)
    path = f"storage/{collection}/{quote_segment(item_id)}"
    response = sync_app.storage(account, "PUT", path, body)
    check_response(response)
    assert response.status_int == 200, response
    answer = decode(response)
    if "payload" in wbo:
        assert answer == header_timestamp(response)
        assert response.body.decode() == response.headers["X-Weave-Timestamp"]
    else:
        assert answer is None  # a new item without payload has no modified

    response = sync_app.storage(account, "GET", path)
    check_response(response)
    assert response.status_int == 200, response
    record = decode(response)
    expected = {"id": item_id, **{k: wbo[k] for k in FIELDS if k in wbo}}
    if "payload" in wbo:
        expected["modified"] = answer
    assert record == expected

    # The same record through a collection GET, as JSON and as newlines.
    query = f"storage/{collection}?full=1"
    response = sync_app.storage(account, "GET", query)
    check_response(response)
    assert decode(response) == [expected]
    response = sync_app.storage(account, "GET", query, headers={"Accept": "application/newlines"})
    check_response(response)
    assert response.body.endswith(b"\n") and response.body.count(b"\n") == 1
    assert json.loads(response.body, parse_float=Decimal) == expected


@settings(max_examples=100, **SETTINGS)
@given(item_id=valid_ids, sortindex=convertible_sortindexes)
def test_sortindex_conversions(sync_app, account, item_id, sortindex):
    sent, stored = sortindex
    collection = fresh_collection("si")
    path = f"storage/{collection}/{quote_segment(item_id)}"
    response = sync_app.storage(account, "PUT", path, {"payload": "p", "sortindex": sent})
    check_response(response)
    assert response.status_int == 200, response
    assert decode(sync_app.storage(account, "GET", path))["sortindex"] == stored


# --- batches of valid and invalid objects ----------------------------------------------------

#: Invalid objects, each with the id it is reported under in ``failed``.
@st.composite
def invalid_wbo(draw, item_id):
    kind = draw(st.sampled_from([
        "sortindex_big", "sortindex_text", "ttl_negative", "ttl_big", "ttl_text_fraction",
        "payload_number", "payload_list", "parentid_long", "predecessorid_long", "list_field",
        "dict_field", "id_long", "id_slash", "id_nonascii", "id_control", "no_id", "not_object",
        "sortindex_nan", "payload_bool", "unknown_list_field"]))
    base = {"id": item_id, "payload": "x"}
    if kind == "sortindex_big":
        return dict(base, sortindex=draw(st.integers(min_value=1_000_000_000))), item_id
    if kind == "sortindex_text":
        return dict(base, sortindex=draw(st.sampled_from(["abc", "", "1x", "--1"]))), item_id
    if kind == "sortindex_nan":
        return dict(base, sortindex=draw(st.sampled_from(["nan", "inf", "-Infinity"]))), item_id
    if kind == "ttl_negative":
        return dict(base, ttl=draw(st.integers(max_value=-1))), item_id
    if kind == "ttl_big":
        return dict(base, ttl=draw(st.integers(min_value=31536001))), item_id
    if kind == "ttl_text_fraction":
        return dict(base, ttl="3.5"), item_id
    if kind == "payload_number":
        return dict(base, payload=draw(st.integers())), item_id
    if kind == "payload_bool":
        return dict(base, payload=False), item_id
    if kind == "payload_list":
        return dict(base, payload=["x"]), item_id
    if kind == "parentid_long":
        return dict(base, parentid="p" * draw(st.integers(65, 200))), item_id
    if kind == "predecessorid_long":
        return dict(base, predecessorid="p" * draw(st.integers(65, 200))), item_id
    if kind == "list_field":
        return dict(base, sortindex=[1]), item_id
    if kind == "dict_field":
        return dict(base, parentid={"a": 1}), item_id
    if kind == "unknown_list_field":
        return dict(base, foo=[1]), item_id
    if kind == "id_long":
        long_id = draw(st.text(alphabet=ID_ALPHABET, min_size=65, max_size=90))
        return dict(base, id=long_id), long_id
    if kind == "id_slash":
        slash_id = item_id[:30] + "/" + item_id[:30]
        return dict(base, id=slash_id), slash_id
    if kind == "id_nonascii":
        odd = item_id[:20] + draw(st.sampled_from(["\u00e9", "\u2603", "\U0001f600"]))
        return dict(base, id=odd), odd
    if kind == "id_control":
        odd = item_id[:20] + draw(st.sampled_from(["\x00", "\x1f", "\x7f", "\t"]))
        return dict(base, id=odd), odd
    if kind == "no_id":
        return {"payload": "x"}, ""
    return draw(st.sampled_from([["x"], "x", 5, None, True])), ""


@st.composite
def mixed_batches(draw):
    size = draw(st.integers(min_value=1, max_value=30))
    ids = draw(st.lists(valid_ids, min_size=size, max_size=size, unique=True))
    entries = []
    for item_id in ids:
        if draw(st.integers(0, 3)) == 0:
            obj, key = draw(invalid_wbo(item_id))
            entries.append(("invalid", obj, key))
        else:
            wbo = draw(valid_wbos)
            entries.append(("valid", dict(wbo, id=item_id), item_id))
    return entries


@settings(max_examples=150, **SETTINGS)
@given(entries=mixed_batches())
def test_post_batches_report_every_valid_id(sync_app, account, entries):
    # An invalid id may collide with a valid one (e.g. the slash id of a short id).
    valid_keys = [key for kind, _, key in entries if kind == "valid"]
    invalid_keys = {key for kind, _, key in entries if kind == "invalid"}
    if invalid_keys & set(valid_keys):
        return
    collection = fresh_collection("batch")
    response = sync_app.storage(account, "POST", f"storage/{collection}",
                                [obj for _, obj, _ in entries])
    check_response(response)
    assert response.status_int == 200, response
    result = decode(response)
    assert set(result) == {"success", "failed", "modified"}
    assert result["success"] == valid_keys
    assert set(result["failed"]) == invalid_keys
    assert all(isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons)
               for reasons in result["failed"].values()), result["failed"]
    assert result["modified"] == header_timestamp(response)

    response = sync_app.storage(account, "GET", f"storage/{collection}?full=1")
    check_response(response)
    stored = {record["id"]: record for record in decode(response)}
    assert set(stored) == set(valid_keys)
    for kind, obj, key in entries:
        if kind != "valid":
            continue
        expected = {"id": key, **{k: obj[k] for k in FIELDS if k in obj}}
        if "payload" in obj:
            expected["modified"] = result["modified"]
        assert stored[key] == expected


# --- a model of a collection ------------------------------------------------------------------

partial_wbos = st.fixed_dictionaries(
    {}, optional={"payload": valid_payloads, "sortindex": valid_sortindexes,
                  "parentid": st.text(alphabet=PRINTABLE_ASCII, min_size=1, max_size=10),
                  "predecessorid": st.text(alphabet=PRINTABLE_ASCII, min_size=1, max_size=10)})
model_ids = st.sampled_from(["a", "b", "{c}", "d d"])
operations = st.lists(st.one_of(
    st.tuples(st.just("put"), model_ids, partial_wbos),
    st.tuples(st.just("put_collection"), model_ids, partial_wbos),
    st.tuples(st.just("post"), st.lists(st.tuples(model_ids, partial_wbos), min_size=1, max_size=4)),
    st.tuples(st.just("delete"), model_ids),
), min_size=1, max_size=8)


class _UserClock:
    """The last timestamp the server gave this user: every later stamp must be greater."""

    last = None

    @classmethod
    def advance(cls, stamp, what):
        assert cls.last is None or stamp > cls.last, \
            f"{what}: timestamp {stamp} is not after the user's previous stamp {cls.last}"
        cls.last = stamp


@settings(max_examples=80, **SETTINGS)
@given(ops=operations)
def test_writes_follow_the_model(sync_app, account, ops):
    collection = fresh_collection("model")
    model = {}
    collection_stamp = None

    def apply(item_id, fields, stamp):
        record = dict(model.get(item_id) or {"id": item_id})
        record.update(fields)
        if "payload" in fields:
            record["modified"] = stamp
        model[item_id] = record

    for op in ops:
        wrote_payload = any("payload" in fields for fields in _fields_of(op))
        if op[0] in ("put", "put_collection"):
            _, item_id, fields = op
            if op[0] == "put":
                response = sync_app.storage(
                    account, "PUT", f"storage/{collection}/{quote_segment(item_id)}", fields)
            else:
                response = sync_app.storage(
                    account, "PUT", f"storage/{collection}", dict(fields, id=item_id))
            check_response(response)
            assert response.status_int == 200, (op, response)
            stamp = header_timestamp(response)
            apply(item_id, fields, stamp)
            assert decode(response) == model[item_id].get("modified"), (op, model[item_id])
        elif op[0] == "post":
            _, items = op
            response = sync_app.storage(account, "POST", f"storage/{collection}",
                                        [dict(fields, id=item_id) for item_id, fields in items])
            check_response(response)
            assert response.status_int == 200, (op, response)
            result = decode(response)
            assert result["success"] == [item_id for item_id, _ in items]
            assert result["failed"] == {}
            stamp = result["modified"]
            assert stamp == header_timestamp(response)
            for item_id, fields in items:
                apply(item_id, fields, stamp)
        else:
            _, item_id = op
            existed = item_id in model
            response = sync_app.storage(
                account, "DELETE", f"storage/{collection}/{quote_segment(item_id)}")
            check_response(response)
            assert response.status_int == 200, (op, response)
            stamp = decode(response)
            assert stamp == header_timestamp(response)
            model.pop(item_id, None)

        # info/collections: moves with every payload written and every effective delete.
        info = decode(sync_app.storage(account, "GET", "info/collections"))
        current = info.get(collection)
        if wrote_payload or (op[0] == "delete" and existed):
            _UserClock.advance(stamp, op)
            assert current == stamp, (op, current, stamp)
            collection_stamp = stamp
        elif op[0] == "delete":
            assert current == collection_stamp, (op, current, collection_stamp)
        elif collection_stamp is not None:
            assert current is not None and current >= collection_stamp, (op, current)
            collection_stamp = current

        response = sync_app.storage(account, "GET", f"storage/{collection}?full=1")
        check_response(response)
        stored = {record["id"]: record for record in decode(response)}
        assert stored == model, (ops, op)
        for item_id, record in model.items():
            response = sync_app.storage(
                account, "GET", f"storage/{collection}/{quote_segment(item_id)}")
            assert response.status_int == 200
            assert decode(response) == record


def _fields_of(op):
    if op[0] in ("put", "put_collection"):
        return [op[2]]
    if op[0] == "post":
        return [fields for _, fields in op[1]]
    return []


# --- deterministic edges ------------------------------------------------------------------


def test_payload_size_limit_is_in_utf8_bytes(sync_app, account):
    collection = fresh_collection("size")
    exact = "\u00e9" * (262144 // 2)  # 262144 UTF-8 bytes, 131072 characters
    response = sync_app.storage(account, "PUT", f"storage/{collection}/exact", {"payload": exact})
    check_response(response)
    assert response.status_int == 200, response
    assert decode(sync_app.storage(account, "GET", f"storage/{collection}/exact"))["payload"] == exact
    response = sync_app.storage(account, "PUT", f"storage/{collection}/over",
                                {"payload": exact + "a"})
    check_response(response)
    assert (response.status_int, decode(response)) == (400, 8)
    assert sync_app.storage(account, "GET", f"storage/{collection}/over").status_int == 404


@pytest.mark.parametrize("payload_json", ['"\\ud800"', '"a\\udfffb"', '"\\ud83d\\ude00"',
                                          '"\\u0000x"'])
def test_escaped_payloads_round_trip_or_are_refused(sync_app, account, payload_json):
    """Lone surrogates are valid JSON escapes: store them faithfully or refuse with a code."""
    collection = fresh_collection("esc")
    body = ('{"payload": ' + payload_json + "}").encode()
    response = sync_app.storage(account, "PUT", f"storage/{collection}/x", body)
    check_response(response)
    if response.status_int == 400:
        assert decode(response) in (6, 8)
        return
    assert response.status_int == 200, response
    response = sync_app.storage(account, "GET", f"storage/{collection}/x")
    check_response(response)
    assert decode(response)["payload"] == json.loads(payload_json)


def test_ttl_zero_is_invisible_at_once_and_a_later_write_replaces_it_whole(sync_app, account):
    collection = fresh_collection("ttl")
    path = f"storage/{collection}/x"
    response = sync_app.storage(account, "PUT", path,
                                {"payload": "a", "sortindex": 5, "parentid": "p", "ttl": 0})
    check_response(response)
    assert response.status_int == 200, response
    written = decode(response)
    assert sync_app.storage(account, "GET", path).status_int == 404
    assert decode(sync_app.storage(account, "GET", f"storage/{collection}")) == []
    assert collection not in decode(sync_app.storage(account, "GET", "info/collection_counts"))
    # Expired items still count for the collection's timestamp.
    assert decode(sync_app.storage(account, "GET", "info/collections"))[collection] == written
    # A new write treats the expired item as absent: nothing of the old one comes back.
    response = sync_app.storage(account, "PUT", path, {"payload": "b"})
    assert response.status_int == 200
    record = decode(sync_app.storage(account, "GET", path))
    assert record == {"id": "x", "payload": "b", "modified": decode(response)}
    # A metadata-only write to an expired item does not resurrect its payload.
    response = sync_app.storage(account, "PUT", f"storage/{collection}/y",
                                {"payload": "old", "ttl": 0})
    assert response.status_int == 200
    response = sync_app.storage(account, "PUT", f"storage/{collection}/y", {"sortindex": 1})
    assert response.status_int == 200
    response = sync_app.storage(account, "GET", f"storage/{collection}/y")
    if response.status_int == 200:
        assert "payload" not in decode(response), decode(response)


def test_client_supplied_server_fields_are_dropped(sync_app, account):
    collection = fresh_collection("drop")
    other = fresh_collection("other")
    response = sync_app.storage(account, "PUT", f"storage/{collection}/x", {
        "payload": "x", "modified": 1.0, "username": "somebody", "collection": other,
        "payload_size": 99999999})
    check_response(response)
    assert response.status_int == 200
    written = decode(response)
    assert written > 1000000000
    assert decode(sync_app.storage(account, "GET", f"storage/{collection}/x")) == \
        {"id": "x", "payload": "x", "modified": written}
    info = decode(sync_app.storage(account, "GET", "info/collections"))
    assert other not in info
    usage = decode(sync_app.storage(account, "GET", "info/collection_usage"))
    assert usage[collection] == Decimal(1) / 1024
    # Metadata-only with a client "modified": still ignored.
    response = sync_app.storage(account, "PUT", f"storage/{collection}/x",
                                {"sortindex": 2, "modified": 5.0})
    assert decode(response) == written
    assert decode(sync_app.storage(account, "GET", f"storage/{collection}/x"))["modified"] == written


def test_batch_limits_100_items_and_1_mib(sync_app, account):
    collection = fresh_collection("limits")
    response = sync_app.storage(account, "POST", f"storage/{collection}",
                                [{"id": f"n{i:03d}", "payload": "p"} for i in range(101)])
    check_response(response)
    assert response.status_int == 200
    result = decode(response)
    assert result["success"] == [f"n{i:03d}" for i in range(100)]
    assert result["failed"] == {"n100": ["retry wbo"]}
    assert len(decode(sync_app.storage(account, "GET", f"storage/{collection}"))) == 100

    collection = fresh_collection("bytes")
    response = sync_app.storage(account, "POST", f"storage/{collection}",
                                [{"id": f"b{i}", "payload": "x" * 250000} for i in range(5)])
    check_response(response)
    assert response.status_int == 200
    result = decode(response)
    assert result["success"] == ["b0", "b1", "b2", "b3"]
    assert result["failed"] == {"b4": ["retry bytes"]}
    assert sorted(decode(sync_app.storage(account, "GET", f"storage/{collection}"))) == \
        ["b0", "b1", "b2", "b3"]


def test_x_if_unmodified_since_equal_passes_older_fails_and_nothing_is_written(sync_app, account):
    collection = fresh_collection("xius")
    response = sync_app.storage(account, "PUT", f"storage/{collection}/a", {"payload": "1"})
    stamp = response.headers["X-Weave-Timestamp"]
    older = str(Decimal(stamp) - Decimal("0.01"))
    for method, path, body in (("PUT", f"storage/{collection}/b", {"payload": "2"}),
                               ("POST", f"storage/{collection}", [{"id": "b", "payload": "2"}]),
                               ("PUT", f"storage/{collection}", {"id": "b", "payload": "2"}),
                               ("DELETE", f"storage/{collection}/a", None),
                               ("DELETE", f"storage/{collection}", None),
                               ("DELETE", f"storage/{collection}?ids=a", None)):
        response = sync_app.storage(account, method, path, body,
                                    {"X-If-Unmodified-Since": older})
        check_response(response)
        assert response.status_int == 412, (method, path, response)
    assert decode(sync_app.storage(account, "GET", f"storage/{collection}")) == ["a"]
    assert decode(sync_app.storage(account, "GET", "info/collections"))[collection] == Decimal(stamp)
    response = sync_app.storage(account, "PUT", f"storage/{collection}/b", {"payload": "2"},
                                {"X-If-Unmodified-Since": stamp})
    assert response.status_int == 200
    # A collection that was never written never gives 412.
    response = sync_app.storage(account, "PUT", f"storage/{fresh_collection('new')}/b",
                                {"payload": "2"}, {"X-If-Unmodified-Since": "0"})
    assert response.status_int == 200
