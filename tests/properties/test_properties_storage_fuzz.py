"""Random requests at every storage route with every method: the server never breaks.

For each request (random path, ids, query string, headers, body, credentials):

- never a 5xx;
- ``X-Weave-Timestamp`` is present and has two decimals;
- a 400 with a JSON body carries an integer Weave code;
- every ``application/json`` body is valid JSON;
- a rejected request (4xx) changed nothing the user can see: info/collections
  and every collection in full are the same before and after.
"""

import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    ID_ALPHABET,
    basic_auth,
    check_response,
    json_values,
    number_like_strings,
    quote_segment,
    random_wbo_text,
    unicode_text,
    valid_ids,
    valid_payloads,
    valid_sortindexes,
)

COLLECTIONS = ["bookmarks", "history", "tabs", "meta", "crypto", "x.y-Z_9"]
MAX_COLLECTIONS = 12

# --- path pieces ----------------------------------------------------------------------------

raw_segments = st.one_of(
    st.from_regex(r"[A-Za-z0-9%._~!$&'()*+,;=:@-]{0,12}", fullmatch=True),
    st.sampled_from(["%ff", "%c3%28", "%00", "%2F", "%2e%2e", "%zz", "%", "%e2%82", "..", ".",
                     "%20", "a%2Fb", "%7Bguid%7D", "%23", "%3F"]),
)

collection_segments = st.one_of(
    st.sampled_from(COLLECTIONS),
    st.sampled_from(COLLECTIONS),
    st.from_regex(r"[a-zA-Z0-9._-]{1,40}", fullmatch=True),
    unicode_text.map(quote_segment),
    raw_segments,
)

item_ids = st.one_of(
    valid_ids,
    unicode_text,
    st.text(alphabet=ID_ALPHABET, min_size=65, max_size=100),
    st.sampled_from(["", ".", "..", "a/b", "/", "%", "%zz", "{abc}", "?", "#", "~", " ", "a b",
                     "\\", "x" * 64, "x" * 65, "\u00e9", "\t", "\x7f"]),
)

item_segments = st.one_of(
    item_ids.map(quote_segment),
    item_ids.map(lambda text: urllib.parse.quote(text, safe="/")),
    raw_segments,
)

QUERY_KEYS = ["newer", "older", "limit", "offset", "sort", "ids", "full", "index_above",
              "index_below", "parentid", "predecessorid", "client", "v"]

query_values = st.one_of(
    number_like_strings,
    unicode_text,
    st.integers().map(str),
    st.integers(min_value=-5, max_value=300).map(str),
    st.sampled_from(["index", "newest", "oldest", "", "1", "0", "true"]),
    st.lists(valid_ids, max_size=5).map(",".join),
)

query_strings = st.one_of(
    st.just(""),
    st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), unicode_text), query_values),
             max_size=6).map(lambda pairs: urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)),
    st.from_regex(r"[A-Za-z0-9%&=;+._~,-]{0,30}", fullmatch=True),
    st.sampled_from(["%ff=1", "ids=%ff%fe", "newer=%80", "%C3%28=x", "full=%ff", "sort=%ed%a0%80",
                     "parentid=%00", "ids=a%2Cb", "newer=1&newer=x", "limit=%20%205"]),
)

focused_item_segments = st.one_of(*[valid_ids.map(quote_segment)] * 4, item_segments)

plausible_query_values = {
    "newer": st.one_of(st.just("0"), st.integers(0, 2 * 10**9).map(str), number_like_strings),
    "older": st.one_of(st.integers(0, 2 * 10**9).map(str), number_like_strings),
    "limit": st.one_of(st.integers(-2, 20).map(str), number_like_strings),
    "offset": st.one_of(st.integers(-2, 20).map(str), number_like_strings),
    "sort": st.sampled_from(["index", "newest", "oldest", "", "INDEX", "random"]),
    "ids": st.lists(st.one_of(st.sampled_from([f"seed{i}" for i in range(6)]), valid_ids),
                    max_size=4).map(",".join),
    "full": st.sampled_from(["1", "0", "", "true"]),
    "index_above": st.one_of(st.integers(-3, 6).map(str), number_like_strings),
    "index_below": st.one_of(st.integers(-3, 6).map(str), number_like_strings),
    "parentid": st.sampled_from(["p", "q", ""]),
    "predecessorid": st.sampled_from(["p", ""]),
}
focused_query_strings = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(sorted(plausible_query_values)), max_size=5).flatmap(
        lambda keys: st.tuples(*[st.tuples(st.just(k), plausible_query_values[k]) for k in keys])
    ).map(lambda pairs: urllib.parse.urlencode(list(pairs), quote_via=urllib.parse.quote)),
    query_strings,
)


def maybe(strategy, absent=1):
    """None (absent) ``absent`` times out of ``absent + 1``, else a value of ``strategy``."""
    return st.one_of(*[st.none()] * absent, strategy)


@st.composite
def storage_paths(draw, usernames, focused):
    """A path under /<api>/<username>/; ``focused`` keeps to well-formed routes mostly."""
    if focused:
        api = draw(st.sampled_from(["1.1"] * 6 + ["1.0", "1"]))
        username = usernames[0]
        kind = draw(st.sampled_from(["info"] + ["collection"] * 4 + ["item"] * 6 + ["storage"]))
        collection = draw(st.one_of(*[st.sampled_from(COLLECTIONS)] * 6, collection_segments))
    else:
        api = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0", "1", "2.0", "1x1", ""]))
        username = draw(st.sampled_from(usernames))
        kind = draw(st.sampled_from(["info", "storage", "collection", "collection", "item", "item",
                                     "item", "deeper", "user", "random"]))
        collection = draw(collection_segments)
    if kind == "info":
        segments = ["info", draw(st.one_of(
            st.sampled_from(["collections", "collection_counts", "collection_usage", "quota"]),
            raw_segments))]
    elif kind == "storage":
        segments = ["storage"]
    elif kind == "collection":
        segments = ["storage", collection]
    elif kind == "item":
        segments = ["storage", collection, draw(item_segments)]
    elif kind == "deeper":
        segments = ["storage", collection, draw(item_segments), draw(raw_segments)]
    elif kind == "user":
        segments = []
    else:
        segments = draw(st.lists(raw_segments, max_size=4))
    path = "/" + "/".join([api, username] + segments)
    if draw(st.integers(0, 3)) == 0:
        path += draw(st.sampled_from(["/", "//"]))
    query = draw(focused_query_strings if focused else query_strings)
    return path + ("?" + query if query else "")


# --- headers and bodies --------------------------------------------------------------------

header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40)

timestamps_text = st.one_of(
    st.integers(min_value=0, max_value=4 * 10**11).map(lambda c: f"{c // 100}.{c % 100:02d}"),
    st.integers(min_value=0, max_value=4 * 10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)

if_unmodified_since = st.one_of(st.none(), header_text, number_like_strings, timestamps_text)

accept_media = st.sampled_from([
    "application/json", "application/newlines", "application/whoisi", "*/*", "text/html",
    "application/*", "application/xxx", "", "garbage;;", "APPLICATION/WHOISI", "text/*",
    "application/json;charset=utf-8", "application/newlines; level=1"])
accept_q = st.one_of(st.none(), st.sampled_from(
    ["1", "0", "0.5", "0.50", "1.0", "0.001", "abc", "-1", "2", "1.5", "", " 0.3", "0.1234", "nan"]))
accept_headers = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "application/json;q=0.9,*/*;q=0.2",
                     "application/newlines", "application/whoisi"]),
    st.lists(st.tuples(accept_media, accept_q), max_size=4).map(
        lambda items: ", ".join(media + (f";q={q}" if q is not None else "") for media, q in items)),
    header_text,
)

content_types = st.one_of(st.none(), st.sampled_from([
    "application/json", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/octet-stream", "garbage"]), header_text)

valid_wbo_dicts = st.fixed_dictionaries(
    {"id": valid_ids},
    optional={"payload": valid_payloads, "sortindex": valid_sortindexes,
              "parentid": valid_ids, "predecessorid": valid_ids,
              # Never a TTL that could expire mid-test: expiry between the "before" and
              # "after" snapshots would look like a rejected request changing data.
              "ttl": st.one_of(st.just(0), st.integers(min_value=3600, max_value=31536000))})


def _deep(depth):
    return st.sampled_from([
        "[" * depth + "]" * depth,
        '{"a": ' * depth + "1" + "}" * depth,
        "[" * depth,
        '[{"id": "deep", "payload": ' + "[" * depth + "]" * depth + "}]",
        '{"id": "deep", "sortindex": ' + "[" * depth + "]" * depth + "}",
    ])


bodies = st.one_of(
    st.none(),
    st.binary(max_size=120),
    st.sampled_from([b"\xff\xfe", b"\xc3\x28", b'{"id": "\xff", "payload": "x"}',
                     b'{"payload": "\xed\xa0\x80"}', b"", b"null", b"[]", b"{}", b"[null]",
                     b"[1, 2]", b'"str"', b"1", b"{", b"[{]", b'{"id": "a", "payload": "x"}junk',
                     b"\xef\xbb\xbf{\"payload\": \"bom\"}", b'[{"id": "a"}, {"id": "a"}]',
                     b'{"id": "a", "id": "b", "payload": "dup"}', b" \n\t{\"payload\": \"ws\"} ",
                     b'{"payload": "x", "ttl": 0}']),
    random_wbo_text().map(lambda text: text.encode("utf-8")),
    st.lists(random_wbo_text(), max_size=8).map(
        lambda texts: ("[" + ", ".join(texts) + "]").encode("utf-8")),
    json_values.map(lambda value: json.dumps(value).encode("utf-8")),
    st.sampled_from([50, 900, 5000, 100000]).flatmap(_deep).map(lambda text: text.encode()),
    valid_wbo_dicts.map(lambda wbo: json.dumps(wbo).encode("utf-8")),
    st.lists(valid_wbo_dicts, max_size=6).map(lambda wbos: json.dumps(wbos).encode("utf-8")),
    st.integers(min_value=98, max_value=103).map(
        lambda n: json.dumps([{"id": f"n{i}", "payload": "p"} for i in range(n)]).encode()),
    st.text(max_size=50).map(lambda text: text.encode("utf-8")),
)

METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "PROPFIND"]

#: Payloads with lone surrogates: valid JSON escapes (\\ud800) that UTF-8 cannot encode.
surrogate_wbos = st.fixed_dictionaries({
    "id": valid_ids,
    "payload": st.text(alphabet=st.one_of(st.characters(categories=["Cs"]), st.sampled_from("ab")),
                       max_size=6)})

focused_bodies = st.one_of(
    surrogate_wbos.map(lambda wbo: json.dumps(wbo).encode("ascii")),
    st.lists(surrogate_wbos, min_size=1, max_size=3).map(lambda wbos: json.dumps(wbos).encode()),
    *[valid_wbo_dicts.map(lambda wbo: json.dumps(wbo).encode("utf-8"))] * 3,
    *[st.lists(valid_wbo_dicts, min_size=1, max_size=6).map(
        lambda wbos: json.dumps(wbos).encode("utf-8"))] * 2,
    random_wbo_text().map(lambda text: text.encode("utf-8")),
    st.lists(st.one_of(valid_wbo_dicts.map(json.dumps), random_wbo_text()), max_size=6).map(
        lambda texts: ("[" + ", ".join(texts) + "]").encode("utf-8")),
    bodies,
)


@st.composite
def storage_requests(draw, main, other, focused):
    common = ["GET", "PUT", "POST", "DELETE"] * (6 if focused else 3)
    method = draw(st.sampled_from(METHODS + common))
    usernames = [main["username"]] * 6 + [other["username"], main["username"].upper(),
                                          "nosuchuser", main["email"].replace("@", "%40")]
    path = draw(storage_paths(usernames, focused))
    headers = {}
    credentials = draw(st.sampled_from(["main"] * (30 if focused else 8) + [
        "wrong", "other", "none", "garbage", "email", "nocolon", "latin1"]))
    if credentials == "main":
        headers["Authorization"] = main["auth"]
    elif credentials == "wrong":
        headers["Authorization"] = basic_auth(main["username"], main["password"] + "x")
    elif credentials == "other":
        headers["Authorization"] = other["auth"]
    elif credentials == "garbage":
        headers["Authorization"] = draw(header_text)
    elif credentials == "email":
        headers["Authorization"] = basic_auth(main["email"], main["password"])
    elif credentials == "nocolon":
        headers["Authorization"] = "Basic " + "bm9jb2xvbg=="
    elif credentials == "latin1":
        headers["Authorization"] = "Basic " + "/+7/OnBhc3M="  # b"\xff\xee\xff:pass"
    absent = 4 if focused else 1
    value = draw(maybe(if_unmodified_since, absent))
    if value is not None:
        headers["X-If-Unmodified-Since"] = value
    value = draw(maybe(accept_headers, absent))
    if value is not None:
        headers["Accept"] = value
    value = draw(maybe(st.one_of(st.sampled_from(["1", "true", "", "0"]), header_text), absent))
    if value is not None:
        headers["X-Confirm-Delete"] = value
    value = draw(maybe(content_types, absent))
    if value is not None:
        headers["Content-Type"] = value
    if method in ("GET", "HEAD") and draw(st.integers(0, 5)):
        body = None
    else:
        body = draw(focused_bodies if focused else bodies)
    return method, path, headers, body


class _Accounts:
    """Registered once per module (hypothesis strategies need them before the first example)."""

    main = None
    other = None
    snapshot = None


def _setup(sync_app):
    if _Accounts.main is None or _Accounts.main["username"] not in {
            a["username"] for a in sync_app.accounts.values()}:
        _Accounts.main = sync_app.register("fuzz-main")
        _Accounts.other = sync_app.register("fuzz-other")
        _Accounts.snapshot = None
    return _Accounts.main, _Accounts.other


def _seed(sync_app, main):
    """Some data, so that rejected writes have something to damage."""
    for collection in ("bookmarks", "history"):
        response = sync_app.storage(main, "POST", f"storage/{collection}", [
            {"id": f"seed{i}", "payload": f"seed {i}", "sortindex": i, "parentid": "p"}
            for i in range(5)])
        assert response.status_int == 200
    _Accounts.snapshot = None


def _fuzz(sync_app, main, other, focused, max_examples):
    @settings(max_examples=max_examples, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(request=storage_requests(main, other, focused))
    def run(request):
        method, path, headers, body = request
        before = _Accounts.snapshot
        if before is None:
            before = sync_app.snapshot(main)
            if len(before["info"]) > MAX_COLLECTIONS:
                sync_app.storage(main, "DELETE", "storage", headers={"X-Confirm-Delete": "1"})
                _seed(sync_app, main)
                before = sync_app.snapshot(main)
        _Accounts.snapshot = None  # until this example is known not to have changed anything
        response = sync_app.request(method, path, body, headers)
        status = check_response(response)
        if 400 <= status < 500:
            after = sync_app.snapshot(main)
            assert after == before, (
                f"{method} {path} {headers} {body!r:.300} was refused with {status} "
                f"but changed the stored data")
            _Accounts.snapshot = after
        elif method in ("GET", "HEAD"):
            _Accounts.snapshot = before
        else:
            _Accounts.snapshot = None

    run()


def test_storage_fuzz_well_formed_routes(sync_app):
    """Mostly real routes with good credentials: random ids, queries, headers and bodies."""
    main, other = _setup(sync_app)
    _seed(sync_app, main)
    _fuzz(sync_app, main, other, focused=True, max_examples=200)


def test_storage_fuzz_any_route(sync_app):
    """Any path, method and credentials."""
    main, other = _setup(sync_app)
    _seed(sync_app, main)
    _fuzz(sync_app, main, other, focused=False, max_examples=150)


NASTY_CASES = [
    ("GET", "storage/bookmarks?newer=abc", {"Accept": "application/json"}, None),
    ("PUT", "storage/bookmarks/x", {"X-If-Unmodified-Since": "x", "Accept": "application/json"},
     b'{"payload": "x"}'),
    ("PUT", "storage/bookmarks/x", {"X-If-Unmodified-Since": "nan"}, b'{"payload": "x"}'),
    ("PUT", "storage/bookmarks/x", {"X-If-Unmodified-Since": "1e400"}, b'{"payload": "x"}'),
    ("PUT", "storage/bookmarks/x", {"X-If-Unmodified-Since": "-inf"}, b'{"payload": "x"}'),
    ("POST", "storage/bookmarks", {"X-If-Unmodified-Since": "abc"}, b"[]"),
    ("DELETE", "storage/bookmarks/x", {"X-If-Unmodified-Since": "snan"}, None),
    ("DELETE", "storage/bookmarks", {"X-If-Unmodified-Since": "Infinity"}, None),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "x", "sortindex": "nan"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "x", "sortindex": "inf"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "x", "sortindex": 1e400}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "x", "ttl": "1e400"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "x", "sortindex": 1' + b"0" * 5000 + b"}"),
    ("PUT", "storage/bookmarks/%C3%A9", {}, b'{"payload": "x"}'),
    ("PUT", "storage/bookmarks/" + "x" * 65, {}, b'{"payload": "x"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"id": "\xc3\xa9", "payload": "x"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"parentid": "\xc3\xa9", "payload": "x"}'),
    ("POST", "storage/bookmarks", {}, b'[{"id": "\xc3\xa9", "payload": "x"}]'),
    ("POST", "storage/bookmarks", {}, b'{"id": "a/b", "payload": "x"}'),
    ("POST", "storage/bookmarks", {}, b'{"payload": "x"}'),
    ("POST", "storage/bookmarks", {}, b"null"),
    ("POST", "storage/bookmarks", {}, b'"just a string"'),
    ("POST", "storage/bookmarks", {}, b"[" * 100000 + b"]" * 100000),
    ("PUT", "storage/bookmarks/x", {}, b'{"a": ' * 100000 + b"1" + b"}" * 100000),
    ("PUT", "storage/bookmarks/x", {}, b"\xff\xfe\x00"),
    ("GET", "storage/bookmarks?newer=nan", {}, None),
    ("GET", "storage/bookmarks?older=1e400", {}, None),
    ("GET", "storage/bookmarks?limit=99999999999999999999999", {}, None),
    ("GET", "storage/bookmarks?limit=1&offset=99999999999999999999999", {}, None),
    ("GET", "storage/bookmarks?index_above=1e400", {}, None),
    ("GET", "storage/bookmarks?index_below=nan", {}, None),
    ("GET", "storage/bookmarks?ids=" + ",".join(["x"] * 5000), {}, None),
    ("GET", "storage/bookmarks?ids=%ff%fe", {}, None),
    ("GET", "storage/bookmarks?full=1&sort=index", {"Accept": "application/whoisi;q=abc"}, None),
    ("GET", "storage/bookmarks?newer=1%00", {}, None),
    ("DELETE", "storage/bookmarks?ids=&limit=-1&offset=-1&sort=index", {}, None),
    ("DELETE", "storage/bookmarks?newer=-99999999999999999999999", {}, None),
    ("GET", "info/collections?newer=nan&limit=x", {}, None),
    ("GET", "storage/bookmarks/%ff", {}, None),
    ("DELETE", "storage/bookmarks/%ff", {}, None),
    ("PUT", "storage/%ff/x", {}, b'{"payload": "x"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "\\ud800"}'),
    ("POST", "storage/bookmarks", {}, b'[{"id": "sur", "payload": "a\\udfffb"}]'),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "x", "parentid": "\\ud800"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"id": "\\ud800", "payload": "x"}'),
    ("PUT", "storage/bookmarks/x", {}, b'{"payload": "\\u0000"}'),
]


@pytest.mark.parametrize("method, path, headers, body", NASTY_CASES)
def test_storage_nasty_requests(sync_app, method, path, headers, body):
    """Deterministic versions of the worst cases, so a regression names its request."""
    main, _ = _setup(sync_app)
    before = sync_app.snapshot(main)
    response = sync_app.storage(main, method, path, body, headers)
    status = check_response(response)
    if 400 <= status < 500:
        assert sync_app.snapshot(main) == before
    _Accounts.snapshot = None
