"""Storage API 1.5 through the WSGI app (WebTest), with tokens minted in the tests and Hawk.

Each test builds its app on a fresh database: SQLite, MariaDB and
PostgreSQL in turn (those with settings of their own on SQLite). Tokens are minted
for the node the app answers as (``http://localhost``, WebTest's host).
"""

import json
import re
import time
from decimal import Decimal

import pytest
import webtest

from syncserver.app import build_app
from syncserver.storage import ItemWrite, StorageBackend, sync15_user_id
from syncserver.storage.sql import SQLStorage
from syncserver.testing.sync15_client import mint_token, signed
from tests.support import app_settings, basic_auth, sync_username

NODE = "http://localhost"
SECRET = "first-secret-that-signs"
OLD_SECRET = "older-secret-that-still-verifies"
TIMESTAMP = re.compile(r"[0-9]+\.[0-9]{2}")


class Client:
    """A 1.5 client of one uid on a WebTest app."""

    def __init__(self, app, uid, secret=SECRET, node=NODE, **token_fields):
        self.app = app
        self.uid = uid
        self.node = node
        self.credentials = mint_token(uid, node, secret, **token_fields)

    def request(self, method, path, body=None, content_type=None, headers=None, **options):
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            content_type = content_type or "application/json"
        path = f"/1.5/{self.uid}" + path
        response = signed(self.app, method, path, self.credentials, self.node, body=body,
                          content_type=content_type, headers=headers, **options)
        check_common_headers(response)
        return response

    def get(self, path, **options):
        return self.request("GET", path, **options)

    def put(self, path, body, **options):
        return self.request("PUT", path, body, **options)

    def post(self, path, body, **options):
        return self.request("POST", path, body, **options)

    def delete(self, path="", **options):
        return self.request("DELETE", path, **options)


def check_common_headers(response):
    """What every 1.5 answer carries (reference §3.3, appendix A.6)."""
    assert TIMESTAMP.fullmatch(response.headers["X-Weave-Timestamp"]), response
    if 200 <= response.status_int < 300 or response.status_int in (304, 412):
        assert TIMESTAMP.fullmatch(response.headers["X-Last-Modified"]), response
    if response.status_int >= 400:
        assert response.content_type == "application/json", response
        assert isinstance(json.loads(response.body), int), response


def stamp(text):
    return Decimal(text)


def make_app(url, **overrides):
    settings = app_settings(url, **{"storage15.enabled": "true",
                                    "global.master_secret": f"{SECRET} {OLD_SECRET}",
                                    "throttle.enabled": "false", **overrides})
    return webtest.TestApp(build_app(settings))


@pytest.fixture
def app(database_url):
    """On SQLite, MariaDB and PostgreSQL in turn."""
    test_app = make_app(database_url)
    yield test_app
    test_app.app.close()


@pytest.fixture
def client(app):
    return Client(app, 42)


# -- authentication ---------------------------------------------------------------

def test_requests_without_a_valid_token_are_401_with_body_0(app, client):
    answer = app.get("/1.5/42/info/collections", expect_errors=True)
    assert answer.status_int == 401 and answer.body == b"0"
    assert answer.headers["WWW-Authenticate"] == "Hawk"
    assert answer.content_type == "application/json"
    forged = Client(app, 42, secret="not our secret")
    assert forged.get("/info/collections").status_int == 401
    other_uid = Client(app, 43)
    other_uid.credentials = client.credentials  # uid 42's token on uid 43's path
    assert other_uid.get("/info/collections").status_int == 401
    other_node = Client(app, 42, node="https://elsewhere.example")
    answer = signed(app, "GET", "/1.5/42/info/collections", other_node.credentials, NODE)
    assert answer.status_int == 401


def test_a_token_signed_by_an_older_secret_still_verifies(app):
    assert Client(app, 42, secret=OLD_SECRET).get("/info/collections").status_int == 200


def test_expired_tokens_read_only_info_collections_and_only_for_two_hours(app):
    now = time.time()
    recent = Client(app, 42, now=now - 3600 - 60)  # expired a minute ago
    assert recent.get("/info/collections").status_int == 200
    assert recent.get("/info/quota").status_int == 401
    assert recent.get("/storage/bookmarks").status_int == 401
    old = Client(app, 42, now=now - 3600 - 7300)  # expired over two hours ago
    assert old.get("/info/collections").status_int == 401


def test_a_replayed_request_is_refused(app, client):
    # The same ts too: a replay is the same (token, ts, nonce), whatever second it arrives in.
    sent_at = time.time()
    first = client.get("/info/collections", nonce="same-nonce", now=sent_at)
    assert first.status_int == 200
    assert client.get("/info/collections", nonce="same-nonce", now=sent_at).status_int == 401
    assert client.get("/info/collections", nonce="same-nonce",
                      now=sent_at + 1).status_int == 200  # another ts: another request


def test_a_stale_timestamp_tells_the_client_the_server_time(app, client):
    answer = client.get("/info/collections", ts_offset=-3600)
    assert answer.status_int == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith("Hawk ts=") and 'error="Stale timestamp"' in challenge
    server_ts = int(re.search(r'ts="([0-9]+)"', challenge).group(1))
    assert abs(server_ts - time.time()) < 60


def test_a_payload_hash_is_checked_when_sent(app, client):
    good = client.put("/storage/meta/global", {"payload": "x"}, hash_payload=True)
    assert good.status_int == 200
    credentials, path = client.credentials, "/1.5/42/storage/meta/global"
    from syncserver.testing.sync15_client import hawk_header

    header = hawk_header("PUT", NODE + path, credentials, body=b'{"payload": "x"}',
                         content_type="application/json")
    request = webtest.TestRequest.blank(path, method="PUT", headers={
        "Authorization": header, "Content-Type": "application/json"})
    request.environ["REQUEST_URI"] = path
    request.body = b'{"payload": "tampered"}'
    assert app.request(request, expect_errors=True).status_int == 401


# -- routing and formats ------------------------------------------------------------

def test_unknown_paths_are_404_and_wrong_methods_405_with_json_bodies(app, client):
    answer = app.get("/1.5/42/nothing/here", expect_errors=True)
    assert answer.status_int == 404 and answer.body == b"0"
    assert app.get("/1.5/42", expect_errors=True).status_int == 405
    answer = client.request("PATCH", "/storage/bookmarks")
    assert answer.status_int == 405 and answer.body == b"0"
    assert client.get("/storage/not%20a%20name").status_int == 404
    assert client.get("/storage/" + "x" * 33).status_int == 404


def test_the_api_is_off_unless_enabled(sqlite_url):
    off = webtest.TestApp(build_app(app_settings(sqlite_url)))
    try:
        answer = off.get("/1.5/42/info/collections", expect_errors=True)
        assert answer.status_int == 404 and answer.body == b"0"
    finally:
        off.app.close()


def test_info_configuration_announces_every_limit(sqlite_url):
    app = make_app(sqlite_url, **{"storage.max_post_records": "50",
                                  "storage.max_total_bytes": "4000000"})
    try:
        answer = Client(app, 7).get("/info/configuration")
        assert answer.status_int == 200
        assert answer.json == {
            "max_request_bytes": 16 * 1024 * 1024, "max_post_records": 50,
            "max_post_bytes": 2097152, "max_total_records": 10000,
            "max_total_bytes": 4000000, "max_record_payload_bytes": 2097152}
    finally:
        app.app.close()


def test_unacceptable_accept_is_406_and_newlines_are_served(client):
    client.post("/storage/history", [{"id": "a", "payload": "p"}, {"id": "b", "payload": "q"}])
    answer = client.get("/storage/history?full=1", headers={"Accept": "x/yy"})
    assert answer.status_int == 406 and answer.body == b"0"
    answer = client.get("/storage/history?full=1&sort=oldest",
                        headers={"Accept": "application/newlines"})
    assert answer.content_type == "application/newlines"
    lines = answer.body.decode().split("\n")
    assert lines[-1] == "" and [json.loads(line)["id"] for line in lines[:-1]] == ["a", "b"]
    default = client.get("/storage/history", headers={
        "Accept": "application/json;q=0.9,*/*;q=0.2"})
    assert default.content_type == "application/json"


# -- items --------------------------------------------------------------------------

def test_put_answers_its_timestamp_and_get_returns_the_bso(client):
    answer = client.put("/storage/meta/global", {"payload": "{}", "sortindex": 5, "ttl": 60,
                                                 "modified": 1, "collection": "meta"})
    assert answer.status_int == 200
    written = answer.body.decode()
    assert TIMESTAMP.fullmatch(written)
    assert answer.headers["X-Last-Modified"] == written == answer.headers["X-Weave-Timestamp"]
    got = client.get("/storage/meta/global")
    assert got.json == {"id": "global", "modified": float(written), "payload": "{}",
                        "sortindex": 5}
    assert re.search(r'"modified": [0-9]+\.[0-9]{2}', got.body.decode())
    assert got.headers["X-Last-Modified"] == written


def test_a_new_item_without_payload_gets_an_empty_one(client):
    answer = client.put("/storage/prefs/p", {"sortindex": 1})
    assert answer.status_int == 200
    assert client.get("/storage/prefs/p").json["payload"] == ""


def test_invalid_bsos_and_bodies(client):
    assert client.put("/storage/c/a", {"unexpected": 1}).body == b"8"
    assert client.put("/storage/c/a", {"parentid": "x"}).status_int == 400
    assert client.put("/storage/c/a", {"sortindex": "2.6"}).body == b"8"
    assert client.put("/storage/c/a", "not json", content_type="text/plain").body == b"6"
    assert client.put("/storage/c/a", "42", content_type="text/plain").body == b"8"
    answer = client.put("/storage/c/a", {"payload": "x"}, content_type="application/xml")
    assert answer.status_int == 415 and answer.body == b"0"
    known_bad = '{"IV": "AAAAAAAAAAAAAAAAAAAAAA==", "hmac": "x"}'
    assert client.put("/storage/crypto/keys", {"payload": known_bad}).body == b"8"
    assert client.put("/storage/other/keys", {"payload": known_bad}).status_int == 200


def test_missing_items_are_404_and_if_modified_since_gives_304(client):
    assert client.get("/storage/c/nothing").status_int == 404
    assert client.delete("/storage/c/nothing").status_int == 404
    written = client.put("/storage/c/a", {"payload": "x"}).body.decode()
    answer = client.get("/storage/c/a", headers={"X-If-Modified-Since": written})
    assert answer.status_int == 304 and answer.headers["X-Last-Modified"] == written
    assert client.get("/storage/c/a", headers={
        "X-If-Modified-Since": str(stamp(written) - Decimal("0.01"))}).status_int == 200
    both = client.get("/storage/c/a", headers={"X-If-Modified-Since": written,
                                                "X-If-Unmodified-Since": written})
    assert both.status_int == 400


def test_if_unmodified_since_on_items_and_create_only(client):
    created = client.put("/storage/c/a", {"payload": "1"},
                         headers={"X-If-Unmodified-Since": "0"})
    assert created.status_int == 200
    again = client.put("/storage/c/a", {"payload": "2"}, headers={"X-If-Unmodified-Since": "0"})
    assert again.status_int == 412
    assert again.headers["X-Last-Modified"] == created.body.decode()
    client.put("/storage/c/b", {"payload": "other item"})
    # The item's own timestamp counts, not the collection's.
    ok = client.put("/storage/c/a", {"payload": "3"},
                    headers={"X-If-Unmodified-Since": created.body.decode()})
    assert ok.status_int == 200
    assert client.get("/storage/c/a").json["payload"] == "3"


def test_the_server_time_is_never_before_the_last_modified_it_answers(client, monkeypatch):
    """Writes in one centisecond get T = last + 0.01, ahead of the clock; a 412, a 304 or
    a 202 then answering that X-Last-Modified says X-Weave-Timestamp >= it (§3.3: reads
    answer max(now, X-Last-Modified)), so a client's idea of the server time never goes
    back past a modified time it was given."""
    now = 1_800_000_000_00
    monkeypatch.setattr("syncserver.web.dispatcher.now_centiseconds", lambda: now)
    first = stamp(client.put("/storage/c/a", {"payload": "1"}).body.decode())
    second = client.put("/storage/c/b", {"payload": "2"})
    bumped = stamp(second.body.decode())
    assert first == stamp("1800000000.00") and bumped == first + Decimal("0.01")
    assert stamp(second.headers["X-Weave-Timestamp"]) == bumped
    answers = [
        client.put("/storage/c/b", {"payload": "3"}, headers={"X-If-Unmodified-Since": "0"}),
        client.get("/storage/c/b", headers={"X-If-Modified-Since": str(bumped)}),
        client.get("/storage/c", headers={"X-If-Unmodified-Since": str(first)}),
        client.post("/storage/c?batch=true", [{"id": "d", "payload": "4"}]),
        client.get("/storage/c/b"),
        client.get("/info/collections"),
    ]
    assert [answer.status_int for answer in answers] == [412, 304, 412, 202, 200, 200]
    for answer in answers:
        assert stamp(answer.headers["X-Last-Modified"]) == bumped, answer
        assert stamp(answer.headers["X-Weave-Timestamp"]) == bumped, answer


def test_ttl_hides_items_and_a_ttl_only_put_keeps_modified(client):
    written = client.put("/storage/forms/f", {"payload": "x"}).body.decode()
    time.sleep(0.02)
    later = client.put("/storage/forms/f", {"ttl": 3600}).body.decode()
    assert stamp(later) > stamp(written)
    assert client.get("/storage/forms/f").json["modified"] == float(written)
    assert client.get("/info/collections").json["forms"] == float(later)
    client.put("/storage/forms/g", {"payload": "y", "ttl": 0})
    assert client.get("/storage/forms/g").status_int == 404
    assert client.get("/storage/forms").json == ["f"]


# -- collections and paging ----------------------------------------------------------

def test_post_reports_success_and_failed_as_strings(client):
    answer = client.post("/storage/bookmarks", [
        {"id": "a", "payload": "x"}, {"id": "b", "sortindex": "nope"},
        {"id": "c", "payload": "z", "ttl": -1}])
    assert answer.status_int == 200
    assert answer.json["success"] == ["a"]
    assert answer.json["failed"] == {"b": "invalid sortindex", "c": "invalid ttl"}
    assert answer.headers["X-Last-Modified"] == format(answer.json["modified"], ".2f")
    assert client.post("/storage/bookmarks", [{"id": "a"}, {"id": "a"}]).body == b"8"
    assert client.post("/storage/bookmarks", {"id": "a"}).body == b"8"
    assert client.post("/storage/bookmarks", "[", content_type="text/plain").body == b"6"


def test_post_limits_give_retry_answers(client):
    answer = client.post("/storage/history", [{"id": f"h{i}", "payload": "p"}
                                               for i in range(105)])
    assert len(answer.json["success"]) == 100
    assert set(answer.json["failed"].values()) == {"retry bso"}


def test_newlines_bodies(client):
    body = '{"id": "a", "payload": "x"}\n{"id": "b", "payload": "y"}\n'
    answer = client.post("/storage/tabs", body, content_type="application/newlines")
    assert answer.json["success"] == ["a", "b"]
    empty_line = client.post("/storage/tabs", "\n", content_type="application/newlines")
    assert empty_line.status_int == 400


def test_collection_reads_filter_sort_and_page(client):
    stamps = []
    for index in range(7):
        stamps.append(client.put(f"/storage/history/h{index}",
                                 {"payload": f"p{index}", "sortindex": index}).body.decode())
    assert client.get("/storage/unknown").json == []
    assert client.get("/storage/history").json == [f"h{i}" for i in reversed(range(7))]
    newer = client.get(f"/storage/history?newer={stamps[4]}&sort=oldest").json
    assert newer == ["h5", "h6"]  # strictly newer
    assert client.get("/storage/history?ids=h1,h3&sort=index").json == ["h3", "h1"]
    assert client.get("/storage/history?ids=").status_int == 400
    assert client.get("/storage/history?ids=" + ",".join(f"x{i}" for i in range(101))
                      ).status_int == 400
    assert client.get("/storage/history?sort=random").status_int == 400
    assert client.get("/storage/history?limit=-1").status_int == 400
    seen, offset = [], None
    while True:
        query = "?full=1&limit=3" + (f"&offset={offset}" if offset else "")
        page = client.get("/storage/history" + query)
        assert page.headers["X-Weave-Records"] == str(len(page.json))
        seen += [record["id"] for record in page.json]
        offset = page.headers.get("X-Weave-Next-Offset")
        if offset is None:
            break
    assert seen == [f"h{i}" for i in reversed(range(7))]
    assert client.get("/storage/history?offset=garbage!").status_int == 400


def test_reads_without_a_limit_are_never_cut(client):
    for start in range(0, 1200, 100):
        client.post("/storage/history", [{"id": f"h{i:05d}", "payload": "p"}
                                         for i in range(start, start + 100)])
    answer = client.get("/storage/history")
    assert len(answer.json) == 1200 and answer.headers["X-Weave-Records"] == "1200"
    assert "X-Weave-Next-Offset" not in answer.headers


def test_paging_is_consistent_with_if_unmodified_since(client):
    client.post("/storage/history", [{"id": f"h{i}", "payload": "p"} for i in range(4)])
    first = client.get("/storage/history?limit=2")
    client.put("/storage/history/new", {"payload": "meanwhile"})
    rest = client.get(f"/storage/history?limit=2&offset={first.headers['X-Weave-Next-Offset']}",
                      headers={"X-If-Unmodified-Since": first.headers["X-Last-Modified"]})
    assert rest.status_int == 412


# -- info --------------------------------------------------------------------------

def test_info_views(client):
    client.post("/storage/bookmarks", [{"id": "a", "payload": "x" * 1024},
                                       {"id": "b", "payload": "y" * 2048}])
    client.put("/storage/prefs/p", {"payload": "z"})
    collections = client.get("/info/collections")
    assert set(collections.json) == {"bookmarks", "prefs"}
    assert collections.headers["X-Weave-Records"] == "2"
    assert collections.headers["X-Last-Modified"] == format(collections.json["prefs"], ".2f")
    assert client.get("/info/collection_counts").json == {"bookmarks": 2, "prefs": 1}
    assert client.get("/info/collection_usage").json["bookmarks"] == 3.0
    used, quota = client.get("/info/quota").json
    assert used == pytest.approx((3072 + 1) / 1024) and quota is None
    last = collections.headers["X-Last-Modified"]
    assert client.get("/info/collections",
                      headers={"X-If-Modified-Since": last}).status_int == 304


def test_quota_is_403_with_code_14(sqlite_url):
    app = make_app(sqlite_url, **{"storage.quota_size": "2"})
    try:
        client = Client(app, 9)
        first = client.put("/storage/c/a", {"payload": "x" * 1500})
        assert first.status_int == 200
        assert first.headers["X-Weave-Quota-Remaining"] == "0.54"  # (2048 - 1500) / 1024
        second = client.put("/storage/c/b", {"payload": "x" * 1500})
        assert second.status_int == 200
        refused = client.put("/storage/c/c", {"payload": "x"})
        assert refused.status_int == 403 and refused.body == b"14"
        assert client.delete("/storage/c/a").status_int == 200  # never blocked
        assert client.get("/info/quota").json[1] == 2
    finally:
        app.app.close()


# -- deletes -----------------------------------------------------------------------

def test_deleting_a_collection_removes_it_from_info_collections(client):
    client.put("/storage/tabs/t", {"payload": "x"})
    client.put("/storage/prefs/p", {"payload": "y"})
    before = stamp(client.get("/info/collections").headers["X-Last-Modified"])
    answer = client.delete("/storage/tabs")
    assert answer.status_int == 200
    deleted_at = stamp(format(answer.json["modified"], ".2f"))
    assert deleted_at > before
    info = client.get("/info/collections")
    assert "tabs" not in info.json
    assert stamp(info.headers["X-Last-Modified"]) >= deleted_at  # never backwards
    assert client.delete("/storage/never-existed").status_int == 200


def test_deleting_ids_keeps_the_collection(client):
    client.post("/storage/c", [{"id": i, "payload": "x"} for i in "abc"])
    answer = client.delete("/storage/c?ids=a,b")
    assert answer.status_int == 200
    assert client.get("/storage/c").json == ["c"]
    assert client.get("/info/collections").json["c"] == answer.json["modified"]
    assert client.delete("/storage/c?ids=").status_int == 400
    assert client.get("/storage/c").json == ["c"]  # SS-7: not the whole collection


def test_deleting_ids_that_match_nothing_stamps_the_collection_all_the_same(client):
    """The collection keeps the request's timestamp (reference §3.8.8), as both
    reference servers stamp it whatever the ids matched."""
    written = client.post("/storage/c", [{"id": "a", "payload": "x"}]).json["modified"]
    answer = client.delete("/storage/c?ids=zz,yy")
    assert answer.status_int == 200
    assert answer.json["modified"] > written
    info = client.get("/info/collections")
    assert info.json["c"] == answer.json["modified"]
    assert float(info.headers["X-Last-Modified"]) == answer.json["modified"]
    listed = client.get("/storage/c")
    assert listed.json == ["a"]
    assert float(listed.headers["X-Last-Modified"]) == answer.json["modified"]
    # A collection the user never had does not appear.
    assert client.delete("/storage/never-had?ids=zz").status_int == 200
    assert "never-had" not in client.get("/info/collections").json


def test_wiping_the_storage_both_ways(client):
    client.put("/storage/c/a", {"payload": "x"})
    answer = client.delete("/storage", headers={"X-Confirm-Delete": "1"})
    assert answer.status_int == 200 and answer.json == {}
    assert TIMESTAMP.fullmatch(answer.headers["X-Last-Modified"])
    assert client.get("/info/collections").json == {}
    client.put("/storage/c/b", {"payload": "y"})
    assert client.delete("").json == {}
    assert client.get("/storage/c").json == []


# -- batches -----------------------------------------------------------------------

def test_a_batch_becomes_visible_at_once_at_commit(client):
    client.put("/storage/bookmarks/old", {"payload": "before"})
    before = client.get("/info/collections").json["bookmarks"]
    opened = client.post("/storage/bookmarks?batch=true", [{"id": "a", "payload": "1"}])
    assert opened.status_int == 202
    batch = opened.json["batch"]
    assert opened.json["success"] == ["a"] and "modified" not in opened.json
    assert opened.headers["X-Last-Modified"] == format(before, ".2f")
    appended = client.post(f"/storage/bookmarks?batch={batch}",
                           [{"id": "b", "payload": "2"}, {"id": "a", "sortindex": 3}])
    assert appended.status_int == 202 and appended.json["batch"] == batch
    assert client.get("/storage/bookmarks").json == ["old"]  # nothing visible yet
    committed = client.post(f"/storage/bookmarks?batch={batch}&commit=true",
                            [{"id": "c", "payload": "3", "ttl": 3600}])
    assert committed.status_int == 200
    assert committed.json["success"] == ["c"]
    modified = committed.json["modified"]
    records = {record["id"]: record for record in client.get("/storage/bookmarks?full=1").json}
    assert {records[i]["modified"] for i in "abc"} == {modified}
    assert records["a"] == {"id": "a", "modified": modified, "payload": "1", "sortindex": 3}
    assert client.get("/info/collections").json["bookmarks"] == modified
    # A committed batch id is gone: nothing can be resurrected with it.
    assert client.post(f"/storage/bookmarks?batch={batch}&commit=true", []).status_int == 400


def test_batch_ids_belong_to_one_user_and_collection(app, client):
    batch = client.post("/storage/bookmarks?batch=true", []).json["batch"]
    assert client.post(f"/storage/history?batch={batch}", [{"id": "x", "payload": "p"}]
                       ).status_int == 400
    other = Client(app, 99)
    assert other.post(f"/storage/bookmarks?batch={batch}", [{"id": "x", "payload": "p"}]
                      ).status_int == 400
    assert client.post("/storage/bookmarks?batch=not-a-batch", []).status_int == 400
    assert client.post("/storage/bookmarks?commit=true", []).status_int == 400


def test_an_immediate_commit_is_a_plain_post(client):
    answer = client.post("/storage/forms?batch=true&commit=true", [{"id": "f", "payload": "x"}])
    assert answer.status_int == 200 and "modified" in answer.json and "batch" not in answer.json


def test_a_wipe_discards_open_batches(client):
    batch = client.post("/storage/passwords?batch=true",
                        [{"id": "secret", "payload": "x"}]).json["batch"]
    client.delete("/storage", headers={"X-Confirm-Delete": "1"})
    resurrect = client.post(f"/storage/passwords?batch={batch}&commit=true", [])
    assert resurrect.status_int == 400
    assert client.get("/storage/passwords").json == []


def test_batch_totals_are_counted_by_the_server(sqlite_url):
    app = make_app(sqlite_url, **{"storage.max_total_records": "150"})
    try:
        client = Client(app, 5)
        batch = client.post("/storage/history?batch=true",
                            [{"id": f"h{i}", "payload": "p"} for i in range(100)]).json["batch"]
        too_many = client.post(f"/storage/history?batch={batch}",
                               [{"id": f"g{i}", "payload": "p"} for i in range(60)])
        assert too_many.status_int == 400 and too_many.body == b"17"
        declared = client.post("/storage/history?batch=true", [],
                               headers={"X-Weave-Total-Records": "151"})
        assert declared.status_int == 400 and declared.body == b"17"
    finally:
        app.app.close()


# -- isolation ---------------------------------------------------------------------

def test_a_sync15_uid_and_a_sync11_account_never_see_each_others_records(app, client):
    email = "isolated@example.com"
    username = sync_username(email)
    app.put_json(f"/user/1.0/{username}", {"email": email, "password": "correct horse 1"})
    user_id = app.app.auth.get_user(username).user_id
    headers = basic_auth(username, "correct horse 1")
    app.put_json(f"/1.1/{username}/storage/bookmarks/old", {"payload": "1.1 record"},
                 headers=headers)
    same_number = Client(app, user_id)
    assert same_number.get("/storage/bookmarks").json == []
    same_number.put("/storage/bookmarks/new", {"payload": "1.5 record"})
    assert app.get(f"/1.1/{username}/storage/bookmarks", headers=headers).json == ["old"]
    storage = app.app.storage
    assert storage.get_item(sync15_user_id(user_id), "bookmarks", "new")["payload"] == (
        "1.5 record")
    storage.set_items(user_id, "tabs", [ItemWrite("t", payload="x")], 100)
    assert same_number.get("/storage/tabs").json == []


# -- CORS --------------------------------------------------------------------------

def test_cors_for_the_allowed_origins_only(sqlite_url):
    app = make_app(sqlite_url, **{"storage15.cors_origins": "https://app.example.org"})
    try:
        preflight = app.options("/1.5/3/storage/bookmarks", headers={
            "Origin": "https://app.example.org", "Access-Control-Request-Method": "POST"})
        assert preflight.status_int == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        other = app.options("/1.5/3/storage/bookmarks", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        answer = Client(app, 3).get("/info/collections",
                                    headers={"Origin": "https://app.example.org"})
        assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
        assert "X-Last-Modified" in answer.headers["Access-Control-Expose-Headers"]
    finally:
        app.app.close()


class NoBatchStorage(SQLStorage):
    """The SQL backend without batch uploads (the interface's defaults: NotSupported)."""

    create_batch = StorageBackend.create_batch
    append_to_batch = StorageBackend.append_to_batch
    commit_batch = StorageBackend.commit_batch


def test_a_backend_without_batches_answers_as_a_server_without_batching(sqlite_url):
    app = make_app(sqlite_url, **{
        "storage.backend": "tests.controllers.test_storage15_api.NoBatchStorage"})
    try:
        client = Client(app, 11)
        answer = client.post("/storage/history?batch=true", [{"id": "h", "payload": "p"}])
        assert answer.status_int == 200 and "modified" in answer.json  # not 202
        assert client.get("/storage/history").json == ["h"]
        assert client.post("/storage/history?batch=abc&commit=true", []).status_int == 400
    finally:
        app.app.close()
