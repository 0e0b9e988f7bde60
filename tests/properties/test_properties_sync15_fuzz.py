"""Random Storage API 1.5 requests: the server never breaks, and a refusal changes nothing.

WebTest on a SQLite file, Hawk-signed requests (mostly valid, some with a
bad payload hash, another uid's or an expired token, a skewed clock, no or
garbage credentials) with random methods, paths, query strings (``ids``,
``newer``, ``older``, ``limit``, ``offset``, ``sort``, ``batch``,
``commit``...), headers (``X-If-*``, declared sizes, ``Accept``,
``Content-Type``) and bodies (bad JSON, invalid BSOs, newline-separated
records, bodies over the limits, which are small here so that every limit
is reachable). For each:

- never a 5xx; ``X-Weave-Timestamp`` with two decimals; a 400 with a JSON
  body carries a Weave code; every JSON body parses;
- a refused request (4xx) changed nothing the user can see: info/collections
  and every collection in full are the same before and after.
"""

import json
import time
import urllib.parse
from decimal import Decimal

import pytest
import webtest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncserver.app import build_app
from syncserver.testing.sync15_client import hawk_header, mint_token
from tests.support import app_settings

from .conftest import (
    check_response,
    number_like_strings,
    quote_segment,
    random_wbo_text,
    unicode_text,
    valid_ids,
)
from .test_properties_storage_fuzz import (
    bodies,
    content_types,
    header_text,
    item_segments,
    raw_segments,
    timestamps_text,
    valid_wbo_dicts,
)

NODE = "http://localhost"
SECRET = "properties-master-secret"
UID = 42
OTHER_UID = 43
COLLECTIONS = ["bookmarks", "history", "tabs", "meta", "forms", "x.y-Z_9"]
MAX_COLLECTIONS = 12
#: Small limits, so that random bodies and batches reach each of them.
LIMITS = {"storage.max_request_bytes": "20000", "storage.max_post_records": "8",
          "storage.max_post_bytes": "6000", "storage.max_total_records": "20",
          "storage.max_total_bytes": "15000", "storage.max_record_payload_bytes": "1500"}


class Sync15App:
    """The app, a valid token per uid, and an open batch to aim at."""

    def __init__(self, directory):
        url = f"sqlite:///{directory / 'sync15.db'}"
        self.wsgi = build_app(app_settings(url, **{
            "storage15.enabled": "true", "global.master_secret": SECRET,
            "throttle.enabled": "false", **LIMITS}))
        self.app = webtest.TestApp(self.wsgi, lint=False)
        self.tokens = {uid: mint_token(uid, NODE, SECRET) for uid in (UID, OTHER_UID)}
        self.expired = mint_token(UID, NODE, SECRET, now=time.time() - 4 * 3600)
        self.open_batch = None
        self.snapshot = None

    def request(self, method, path, body=None, headers=None, auth="valid", uid=UID):
        """``path`` raw (as on the wire); ``auth`` as in :data:`AUTH_KINDS`."""
        request = webtest.TestRequest.blank(path, method=method)
        request.environ["REQUEST_URI"] = path
        for name, value in (headers or {}).items():
            request.headers[name] = value
        if body is not None:
            request.body = body
        authorization = self._authorization(auth, method, path, body, uid,
                                            request.headers.get("Content-Type"))
        if authorization is not None:
            request.headers["Authorization"] = authorization
        return self.app.request(request, expect_errors=True)

    def _authorization(self, auth, method, path, body, uid, content_type):
        url = NODE + path
        token = self.tokens.get(uid, self.tokens[UID])
        if auth == "valid":
            return hawk_header(method, url, token)
        if auth == "hashed":
            return hawk_header(method, url, token, body=body or b"", content_type=content_type)
        if auth == "bad_hash":
            return hawk_header(method, url, token, body=(body or b"") + b"x",
                               content_type=content_type)
        if auth == "other_uid":
            return hawk_header(method, url, self.tokens[OTHER_UID if uid == UID else UID])
        if auth == "expired":
            return hawk_header(method, url, self.expired)
        if auth == "skewed":
            return hawk_header(method, url, token, ts_offset=-7200)
        if auth == "other_node":
            return hawk_header(method, url, mint_token(uid, "https://elsewhere.test", SECRET))
        if auth == "garbage":
            return 'Hawk id="x", ts="1", nonce="n", mac="m"'
        return None

    def storage(self, method, path, body=None, headers=None):
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return self.request(method, f"/1.5/{UID}/{path}", body, headers)

    def take_snapshot(self):
        response = self.storage("GET", "info/collections")
        assert response.status_int == 200, response
        info = json.loads(response.body, parse_float=Decimal)
        collections = {}
        for name in sorted(info):
            response = self.storage("GET", f"storage/{quote_segment(name)}?full=1")
            assert response.status_int == 200, response
            records = json.loads(response.body, parse_float=Decimal)
            collections[name] = sorted(records, key=lambda record: record["id"])
        return {"info": info, "collections": collections}

    def seed(self):
        """Some data, so that refused writes have something to damage; an open batch."""
        for collection in ("bookmarks", "history"):
            response = self.storage("POST", f"storage/{collection}", [
                {"id": f"seed{i}", "payload": f"seed {i}", "sortindex": i} for i in range(5)])
            assert response.status_int == 200, response
        response = self.storage("POST", "storage/bookmarks?batch=true",
                                [{"id": "staged", "payload": "staged"}])
        assert response.status_int == 202, response
        self.open_batch = response.json["batch"]
        self.snapshot = None

    def close(self):
        self.wsgi.close()


@pytest.fixture(scope="module")
def sync15_app(tmp_path_factory):
    app = Sync15App(tmp_path_factory.mktemp("properties-sync15"))
    app.seed()
    yield app
    app.close()


# --- strategies -----------------------------------------------------------------------------

AUTH_KINDS = ["valid"] * 20 + ["hashed"] * 3 + [
    "bad_hash", "other_uid", "expired", "skewed", "other_node", "garbage", "none"]

batch_values = st.one_of(
    st.sampled_from(["true", "TRUE", "1", "", "false", "0" * 24, "f" * 24, "abc", "null",
                     "0123456789abcdef0123456", "0123456789abcdef012345678"]),
    st.from_regex(r"[0-9a-f]{24}", fullmatch=True),
    unicode_text,
    st.just("OPEN"),  # replaced by the seeded open batch's id
)

query_values = {
    "ids": st.one_of(st.lists(st.one_of(st.sampled_from([f"seed{i}" for i in range(6)]),
                                        valid_ids, unicode_text), max_size=6).map(",".join),
                     st.just(",".join(f"x{i}" for i in range(120)))),
    "newer": st.one_of(timestamps_text, number_like_strings),
    "older": st.one_of(timestamps_text, number_like_strings),
    "full": st.sampled_from(["1", "0", "", "true", "yes"]),
    "limit": st.one_of(st.integers(-2, 30).map(str), number_like_strings),
    "offset": st.one_of(st.integers(-2, 30).map(str), number_like_strings, unicode_text,
                        st.sampled_from(["1:2", "0:0", "1700000000.00:3", "a:b", ":", "5:"])),
    "sort": st.sampled_from(["index", "newest", "oldest", "", "random", "INDEX"]),
    "batch": batch_values,
    "commit": st.sampled_from(["true", "1", "", "false", "yes"]),
}
QUERY_KEYS = sorted(query_values)

query_strings = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(QUERY_KEYS), max_size=5).flatmap(
        lambda keys: st.tuples(*[st.tuples(st.just(k), query_values[k]) for k in keys])
    ).map(lambda pairs: urllib.parse.urlencode(list(pairs), quote_via=urllib.parse.quote)),
    st.from_regex(r"[A-Za-z0-9%&=;+._~,-]{0,30}", fullmatch=True),
    st.sampled_from(["%ff=1", "ids=%ff%fe", "newer=%80", "batch=%00", "limit=%20%205",
                     "batch=true&batch=true", "commit=true", "ids=a%2Cb", "newer=1&newer=x"]),
)

def mostly(n):
    """True ``n`` times out of ``n + 1`` (hypothesis favours the first of a sample)."""
    return st.sampled_from([True] * n + [False])


uids = st.sampled_from([str(UID)] * 12 + [str(OTHER_UID), "042", "-42", "abc", "",
                                           "99999999999999999999", "4%32"])


@st.composite
def paths(draw, focused):
    """``(path with query, uid text)``; ``focused``: ``/1.5/42/`` and real routes mostly."""
    uid = str(UID) if focused and draw(mostly(5)) else draw(uids)
    kind = draw(st.sampled_from(["collection"] * 5 + ["item"] * 4 + ["info"] * 2
                                + ["storage", "root", "deeper", "random"]))
    if draw(mostly(8 if focused else 2)):
        collection = draw(st.sampled_from(COLLECTIONS))
    else:
        collection = draw(st.one_of(raw_segments, unicode_text.map(quote_segment)))
    if kind == "info":
        segments = ["info", draw(st.sampled_from(
            ["collections", "collection_counts", "collection_usage", "quota", "configuration"])
            if draw(mostly(6 if focused else 1)) else raw_segments)]
    elif kind == "collection":
        segments = ["storage", collection]
    elif kind == "item":
        segments = ["storage", collection, draw(
            st.sampled_from([f"seed{i}" for i in range(6)]) if draw(mostly(1))
            else valid_ids.map(quote_segment) if draw(mostly(4)) else item_segments)]
    elif kind == "storage":
        segments = ["storage"]
    elif kind == "root":
        segments = []
    elif kind == "deeper":
        segments = ["storage", collection, draw(item_segments), draw(raw_segments)]
    else:
        segments = draw(st.lists(raw_segments, max_size=4))
    api = "1.5" if focused else draw(st.sampled_from(["1.5"] * 6 + ["1.1", "1.4", "2.0", ""]))
    path = "/" + "/".join([api, uid] + segments)
    if not draw(mostly(9 if focused else 4)):
        path += "/"
    query = draw(query_strings)
    if focused and kind == "collection" and not draw(mostly(2)):
        batch = draw(st.sampled_from(["batch=true", "batch=OPEN", "batch=OPEN&commit=true",
                                      "batch=true&commit=true", "commit=true"]))
        query = batch + ("&" + query if query else "")
    return path + ("?" + query if query else ""), uid, kind


def _newlines(records):
    return ("\n".join(records) + "\n").encode("utf-8")


sync15_bodies = st.one_of(
    *[valid_wbo_dicts.map(lambda wbo: json.dumps(wbo).encode())] * 2,
    *[st.lists(valid_wbo_dicts, min_size=1, max_size=12).map(
        lambda wbos: json.dumps(wbos).encode())] * 2,
    st.lists(st.one_of(valid_wbo_dicts.map(json.dumps), random_wbo_text()), max_size=6).map(
        _newlines),
    st.lists(valid_wbo_dicts, max_size=4).map(
        lambda wbos: json.dumps([{**wbo, "payload": "p" * 1600} for wbo in wbos]).encode()),
    st.integers(10, 30).map(lambda n: json.dumps(
        [{"id": f"big{i}", "payload": "q" * 900} for i in range(n)]).encode()),
    st.just(b'{"id": "x", "payload": "' + b"z" * 25000 + b'"}'),
    bodies,
)

declared_headers = st.dictionaries(
    st.sampled_from(["X-Weave-Records", "X-Weave-Bytes", "X-Weave-Total-Records",
                     "X-Weave-Total-Bytes"]),
    st.one_of(st.integers(-1, 30000).map(str), number_like_strings, header_text), max_size=2)

sync15_content_types = st.one_of(st.sampled_from(
    ["application/json", "application/json", "application/newlines", "text/plain"]),
    content_types)


#: Methods a focused request uses on each kind of path (others get 405, which is tested too).
PLAUSIBLE_METHODS = {"collection": ["GET", "POST", "POST", "DELETE"],
                     "item": ["GET", "PUT", "PUT", "DELETE"], "info": ["GET"],
                     "storage": ["DELETE", "GET"], "root": ["DELETE", "GET"]}

single_bodies = st.one_of(
    *[valid_wbo_dicts.map(lambda wbo: json.dumps(wbo).encode())] * 3,
    random_wbo_text().map(str.encode),
    valid_wbo_dicts.map(lambda wbo: json.dumps({**wbo, "payload": "p" * 1600}).encode()),
    st.just(b'{"id": "x", "payload": "' + b"z" * 25000 + b'"}'),
    bodies,
)


@st.composite
def requests(draw, focused):
    path, uid, kind = draw(paths(focused))
    if focused and kind in PLAUSIBLE_METHODS and draw(mostly(7)):
        method = draw(st.sampled_from(PLAUSIBLE_METHODS[kind]))
    else:
        method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS",
                                       "PATCH"]))
    headers = {}
    absent = 3 if focused else 1
    for name, strategy in (
            ("X-If-Unmodified-Since", st.one_of(timestamps_text, number_like_strings,
                                                header_text, st.just("0"))),
            ("X-If-Modified-Since", st.one_of(timestamps_text, number_like_strings,
                                              header_text)),
            ("Accept", st.sampled_from(["application/json", "application/newlines",
                                        "text/html", "*/*", "application/*;q=0", "garbage"])),
            ("Content-Type", sync15_content_types)):
        if not draw(mostly(absent)):
            value = draw(strategy)
            if value is not None:
                headers[name] = value
    if not draw(mostly(absent)):
        headers.update(draw(declared_headers))
    if method in ("GET", "HEAD", "OPTIONS", "DELETE") and draw(mostly(5)):
        body = None
    elif focused and method == "PUT":
        body = draw(single_bodies)
    elif focused and method == "POST" and draw(mostly(2)):
        body = draw(st.lists(valid_wbo_dicts, min_size=1, max_size=10).map(
            lambda wbos: json.dumps(wbos).encode()))
    else:
        body = draw(sync15_bodies if focused else bodies)
    if body is not None:
        if body.startswith(b"{\"") and "newlines" in headers.get("Content-Type", ""):
            del headers["Content-Type"]
        headers.setdefault("Content-Type", "application/json")
    auth = draw(st.sampled_from(AUTH_KINDS if focused else AUTH_KINDS[10:]))
    try:
        numeric_uid = int(uid)
    except ValueError:
        numeric_uid = UID
    return method, path, headers, body, auth, numeric_uid


def _fuzz(app, focused, max_examples):
    @settings(max_examples=max_examples, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(request=requests(focused))
    def run(request):
        method, path, headers, body, auth, uid = request
        path = path.replace("OPEN", app.open_batch)
        before = app.snapshot
        if before is None:
            before = app.take_snapshot()
            if len(before["info"]) > MAX_COLLECTIONS or "history" not in before["info"]:
                app.storage("DELETE", "storage")
                app.seed()
                before = app.take_snapshot()
        app.snapshot = None  # until this example is known to have changed nothing
        response = app.request(method, path, body, headers, auth=auth, uid=uid)
        status = check_response(response)
        if 400 <= status < 500:
            after = app.take_snapshot()
            assert after == before, (
                f"{method} {path} {headers} {body!r:.300} ({auth}) was refused with {status} "
                f"but changed the stored data")
            app.snapshot = after
        elif method in ("GET", "HEAD", "OPTIONS"):
            app.snapshot = before

    run()


def test_sync15_fuzz_well_formed_requests(sync15_app):
    """Mostly real routes, valid signatures, plausible parameters, bodies near the limits."""
    _fuzz(sync15_app, focused=True, max_examples=150)


def test_sync15_fuzz_anything(sync15_app):
    """Any path, method, credentials, query and body."""
    _fuzz(sync15_app, focused=False, max_examples=100)
