"""Storage API 1.1 through the WSGI app: every route, header, status and error code."""

import json
import re
import struct
import threading

import pytest

from tests.controllers.conftest import register

TIMESTAMP = re.compile(r"^\d+\.\d\d$")


def put(app, account, path, obj, status=200, headers=None):
    return app.put(f"{account.root}/storage/{path}", json.dumps(obj),
                   headers={**account.headers, **(headers or {})}, status=status)


def post(app, account, collection, objs, status=200, headers=None):
    return app.post(f"{account.root}/storage/{collection}", json.dumps(objs),
                    headers={**account.headers, **(headers or {})}, status=status)


def get(app, account, path, status=200, headers=None):
    return app.get(f"{account.root}/{path}", headers={**account.headers, **(headers or {})},
                   status=status)


def delete(app, account, path, status=200, headers=None):
    return app.delete(f"{account.root}/{path}", headers={**account.headers, **(headers or {})},
                      status=status)


# -- info ---------------------------------------------------------------------

def test_new_user_has_empty_info(app, alice):
    response = get(app, alice, "info/collections")
    assert response.json == {}
    assert response.headers["X-Weave-Records"] == "0"
    assert get(app, alice, "info/collection_counts").json == {}
    assert get(app, alice, "info/collection_usage").json == {}
    assert get(app, alice, "info/quota").json == [0.0, None]


def test_info_collections_tracks_writes_with_two_decimals(app, alice):
    stamp = put(app, alice, "bookmarks/a", {"payload": "x"}).body.decode()
    assert TIMESTAMP.match(stamp)
    response = get(app, alice, "info/collections")
    assert response.body.decode() == '{"bookmarks": %s}' % stamp
    assert response.headers["X-Weave-Records"] == "1"


def test_counts_and_usage_exclude_expired(app, alice):
    post(app, alice, "history", [{"id": "a", "payload": "12345"}, {"id": "b", "payload": "é"},
                                 {"id": "c", "payload": "gone", "ttl": 0}])
    assert get(app, alice, "info/collection_counts").json == {"history": 2}
    assert get(app, alice, "info/collection_usage").json == {"history": 7 / 1024}
    assert get(app, alice, "info/quota").json == [7 / 1024, None]


def test_info_in_newlines_lists_names(app, alice):
    put(app, alice, "tabs/t", {"payload": "x"})
    response = get(app, alice, "info/collections", headers={"Accept": "application/newlines"})
    assert response.body == b'"tabs"\n'
    assert response.content_type == "application/newlines"


# -- PUT and GET items --------------------------------------------------------

def test_put_then_get_item(app, alice):
    response = put(app, alice, "bookmarks/{abc}", {"payload": "data", "sortindex": 7,
                                                   "parentid": "menu", "predecessorid": "p"})
    assert response.content_type == "application/json"
    assert response.headers["X-Weave-Timestamp"] == response.body.decode()
    item = get(app, alice, "storage/bookmarks/%7Babc%7D").json
    assert item == {"id": "{abc}", "payload": "data", "sortindex": 7, "parentid": "menu",
                    "predecessorid": "p", "modified": float(response.body)}
    raw = get(app, alice, "storage/bookmarks/%7Babc%7D").body.decode()
    assert '"modified": %s' % response.body.decode() in raw


@pytest.mark.parametrize("item_id", ["#", "?", "~", "a b", "x" * 64, "{GUID-1}"])
def test_unusual_ids_work_when_percent_encoded(app, alice, item_id):
    from urllib.parse import quote
    put(app, alice, "forms/" + quote(item_id, safe=""), {"payload": "p"})
    assert get(app, alice, "storage/forms/" + quote(item_id, safe="")).json["id"] == item_id
    assert get(app, alice, "storage/forms").json == [item_id]


def test_missing_and_expired_items_are_404(app, alice):
    get(app, alice, "storage/bookmarks/nope", status=404)
    put(app, alice, "bookmarks/short", {"payload": "x", "ttl": 0})
    get(app, alice, "storage/bookmarks/short", status=404)


def test_client_cannot_set_server_fields(app, alice, bob):
    put(app, alice, "bookmarks/a", {"payload": "x", "modified": 1, "username": bob.username,
                                    "collection": "history", "payload_size": 1})
    item = get(app, alice, "storage/bookmarks/a").json
    assert item["modified"] > 1000
    assert get(app, bob, "info/collections").json == {}
    assert get(app, alice, "info/collections").json.keys() == {"bookmarks"}


def test_metadata_only_put_keeps_payload_and_modified(app, alice):
    first = put(app, alice, "bookmarks/a", {"payload": "x", "sortindex": 1, "ttl": 3600}).body
    again = put(app, alice, "bookmarks/a", {"sortindex": 5}).body
    assert again == first
    item = get(app, alice, "storage/bookmarks/a").json
    assert item["payload"] == "x" and item["sortindex"] == 5
    assert get(app, alice, "info/collections").json["bookmarks"] == float(first)


def test_metadata_only_put_of_new_item_answers_null(app, alice):
    assert put(app, alice, "bookmarks/meta", {"sortindex": 3}).body == b"null"
    assert get(app, alice, "storage/bookmarks/meta").json == {"id": "meta", "sortindex": 3}


def test_every_write_is_strictly_newer(app, alice):
    stamps = [float(put(app, alice, "bookmarks/a", {"payload": str(n)}).body) for n in range(5)]
    assert stamps == sorted(set(stamps))


@pytest.mark.parametrize("body,code", [
    ("not json", b"6"), ("{\"payload\": ", b"6"), (b"\xff\xfe", b"6"), ("NaN", b"6"),
    ("[1, 2]", b"8"), ("\"str\"", b"8"), ('{"payload": 5}', b"8"), ('{"ttl": -1}', b"8"),
    ('{"sortindex": "x"}', b"8"), ('{"id": "' + "x" * 65 + '"}', b"8"),
    ('{"payload": "' + "x" * (256 * 1024 + 1) + '"}', b"8"),
])
def test_bad_put_bodies(app, alice, body, code):
    response = app.put(f"{alice.root}/storage/bookmarks/a", body, headers=alice.headers, status=400)
    assert response.body == code
    assert response.content_type == "application/json"
    assert "X-Weave-Timestamp" in response.headers
    assert get(app, alice, "info/collections").json == {}


def test_invalid_ids_and_collections_on_write(app, alice):
    assert put(app, alice, "bookmarks/" + "x" * 65, {"payload": "x"}, status=400).body == b"8"
    assert put(app, alice, "bookmarks/%C3%A9", {"payload": "x"}, status=400).body == b"8"
    assert put(app, alice, "book$marks/a", {"payload": "x"}, status=400).body == b"13"
    assert put(app, alice, "c" * 33 + "/a", {"payload": "x"}, status=400).body == b"13"
    get(app, alice, "storage/" + "c" * 33, status=404)


def test_any_content_type_is_json(app, alice):
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        app.put(f"{alice.root}/storage/prefs/p", '{"payload": "x"}',
                headers={**alice.headers, "Content-Type": content_type})
    assert get(app, alice, "storage/prefs/p").json["payload"] == "x"


def test_oversized_body_is_413_and_stores_nothing(app, alice, make_test_app):
    small = make_test_app(**{"storage.max_request_bytes": "1000"})
    response = small.put(f"{alice.root}/storage/bookmarks/a",
                         json.dumps({"payload": "x" * 2000}), headers=alice.headers, status=413)
    assert "X-Weave-Timestamp" in response.headers
    assert get(app, alice, "info/collections").json == {}


# -- POST batches ---------------------------------------------------------------

def test_post_batch(app, alice):
    response = post(app, alice, "bookmarks", [
        {"id": "a", "payload": "1"}, {"id": "b", "payload": "2", "sortindex": 2},
        {"id": "x" * 65, "payload": "3"}, {"payload": "no id"}, "not an object",
        {"id": "c", "parentid": "p" * 65}, {"id": "d", "sortindex": "bad"}])
    result = response.json
    assert result["success"] == ["a", "b"]
    assert result["failed"] == {"x" * 65: ["invalid id"], "": ["invalid wbo"],
                                "c": ["invalid parentid"], "d": ["invalid sortindex"]}
    assert response.headers["X-Weave-Timestamp"] == "%.2f" % result["modified"]
    assert re.search(r'"modified": \d+\.\d\d', response.body.decode())
    items = get(app, alice, "storage/bookmarks?full=1&sort=index").json
    assert [item["id"] for item in items] == ["b", "a"]
    assert {item["modified"] for item in items} == {result["modified"]}


def test_post_missing_id_message(app, alice):
    assert post(app, alice, "bookmarks", [{"payload": "x"}]).json["failed"] == {"": ["invalid id"]}


def test_post_count_and_byte_limits(app, alice, make_test_app):
    limited = make_test_app(**{"storage.batch_max_count": "3", "storage.batch_max_bytes": "10"})
    result = limited.post(f"{alice.root}/storage/history", json.dumps(
        [{"id": str(n), "payload": "x"} for n in range(5)]), headers=alice.headers).json
    assert result["success"] == ["0", "1", "2"]
    assert result["failed"] == {"3": ["retry wbo"], "4": ["retry wbo"]}
    result = limited.post(f"{alice.root}/storage/forms", json.dumps(
        [{"id": "a", "payload": "123456"}, {"id": "b", "payload": "123456"}]),
        headers=alice.headers).json
    assert result["success"] == ["a"] and result["failed"] == {"b": ["retry bytes"]}


def test_default_batch_limit_is_100(app, alice):
    result = post(app, alice, "history", [{"id": str(n), "payload": "x"} for n in range(101)]).json
    assert len(result["success"]) == 100 and result["failed"] == {"100": ["retry wbo"]}


def test_post_duplicate_ids_last_wins(app, alice):
    result = post(app, alice, "forms", [{"id": "a", "payload": "1"}, {"id": "a", "payload": "2"}])
    assert result.json["success"] == ["a", "a"]
    assert get(app, alice, "storage/forms/a").json["payload"] == "2"


def test_post_partial_update_keeps_fields(app, alice):
    post(app, alice, "bookmarks", [{"id": "a", "payload": "x", "sortindex": 3, "parentid": "p"}])
    post(app, alice, "bookmarks", [{"id": "a", "payload": "y"}])
    assert get(app, alice, "storage/bookmarks/a").json["sortindex"] == 3
    assert get(app, alice, "storage/bookmarks/a").json["parentid"] == "p"


def test_post_single_object_is_a_put(app, alice):
    response = app.post(f"{alice.root}/storage/clients", '{"id": "one", "payload": "x"}',
                        headers=alice.headers)
    assert TIMESTAMP.match(response.body.decode())
    response = app.put(f"{alice.root}/storage/clients", '{"id": "two", "payload": "y"}',
                       headers=alice.headers)
    assert TIMESTAMP.match(response.body.decode())
    assert sorted(get(app, alice, "storage/clients").json) == ["one", "two"]
    assert app.post(f"{alice.root}/storage/clients", '{"payload": "x"}', headers=alice.headers,
                    status=400).body == b"8"
    assert app.post(f"{alice.root}/storage/clients", '"text"', headers=alice.headers,
                    status=400).body == b"8"


def test_post_bad_json_is_6(app, alice):
    assert app.post(f"{alice.root}/storage/bookmarks", "[{", headers=alice.headers,
                    status=400).body == b"6"


# -- X-If-Unmodified-Since ------------------------------------------------------

def test_if_unmodified_since(app, alice):
    stamp = put(app, alice, "bookmarks/a", {"payload": "x"}).body.decode()
    earlier = "%.2f" % (float(stamp) - 1)
    put(app, alice, "bookmarks/b", {"payload": "x"}, status=412,
        headers={"X-If-Unmodified-Since": earlier})
    post(app, alice, "bookmarks", [{"id": "c", "payload": "x"}], status=412,
         headers={"X-If-Unmodified-Since": earlier})
    delete(app, alice, "storage/bookmarks/a", status=412, headers={"X-If-Unmodified-Since": earlier})
    delete(app, alice, "storage/bookmarks", status=412, headers={"X-If-Unmodified-Since": earlier})
    assert sorted(get(app, alice, "storage/bookmarks").json) == ["a"]
    # Equal is allowed; a collection never written never fails.
    put(app, alice, "bookmarks/b", {"payload": "x"}, headers={"X-If-Unmodified-Since": stamp})
    put(app, alice, "history/h", {"payload": "x"}, headers={"X-If-Unmodified-Since": "1"})


def test_precondition_wins_over_a_bad_body(app, alice):
    put(app, alice, "bookmarks/a", {"payload": "x"})
    app.put(f"{alice.root}/storage/bookmarks/b", "{bad", status=412,
            headers={**alice.headers, "X-If-Unmodified-Since": "1"})


@pytest.mark.parametrize("value", ["yesterday", "nan", "inf", ""])
def test_invalid_if_unmodified_since_is_400(app, alice, value):
    response = put(app, alice, "bookmarks/a", {"payload": "x"}, status=400,
                   headers={"X-If-Unmodified-Since": value})
    assert "X-If-Unmodified-Since" in response.text


def test_racing_writers_exactly_one_wins(make_test_app, sqlite_url):
    app = make_test_app()
    account = register(app, "racer@example.com")
    stamp = put(app, account, "bookmarks/seed", {"payload": "x"}).body.decode()
    statuses = []

    def writer(n):
        response = app.app  # the raw WSGI app is thread-safe; TestApp wraps it per call
        client = type(app)(response)
        statuses.append(client.put(
            f"{account.root}/storage/bookmarks/w{n}", json.dumps({"payload": str(n)}),
            headers={**account.headers, "X-If-Unmodified-Since": stamp}, expect_errors=True).status_int)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [412] * 5


# -- GET collection --------------------------------------------------------------

@pytest.fixture
def four(app, alice):
    stamps = []
    for n in range(1, 5):
        stamps.append(put(app, alice, f"bookmarks/{n}", {
            "payload": f"p{n}", "sortindex": n, "parentid": "odd" if n % 2 else "even"}).body.decode())
    return stamps


def test_get_collection_filters(app, alice, four):
    ids = lambda query: get(app, alice, "storage/bookmarks" + query).json  # noqa: E731
    assert sorted(ids("")) == ["1", "2", "3", "4"]
    assert ids("?sort=oldest") == ["1", "2", "3", "4"]
    assert ids("?sort=newest") == ["4", "3", "2", "1"]
    assert ids("?sort=index") == ["4", "3", "2", "1"]
    assert ids(f"?newer={four[1]}&sort=oldest") == ["3", "4"]
    assert ids(f"?older={four[1]}&sort=oldest") == ["1"]
    assert sorted(ids("?ids=1,3,9")) == ["1", "3"]
    assert sorted(ids("?parentid=even")) == ["2", "4"]
    assert ids("?index_above=2&sort=index") == ["4", "3"]
    assert ids("?index_below=2") == ["1"]
    assert ids("?sort=index&limit=2&offset=2") == ["2", "1"]
    assert ids("?sort=index&limit=2") == ["4", "3"]
    assert ids("?sort=index&limit=0") == ["4", "3", "2", "1"]
    assert ids("?sort=index&limit=2&offset=10") == []
    assert ids("?client=FxHome&v=1.1b2&sort=oldest") == ["1", "2", "3", "4"]


def test_get_collection_full_and_records_header(app, alice, four):
    response = get(app, alice, "storage/bookmarks?full=1&sort=oldest&limit=3")
    assert response.headers["X-Weave-Records"] == "3"
    assert [item["payload"] for item in response.json] == ["p1", "p2", "p3"]
    assert float(four[0]) == response.json[0]["modified"]


def test_get_collection_formats(app, alice, four):
    newlines = get(app, alice, "storage/bookmarks?full=1&sort=oldest",
                   headers={"Accept": "application/newlines"})
    assert newlines.content_type == "application/newlines"
    lines = newlines.body.decode().split("\n")
    assert lines[-1] == "" and [json.loads(line)["id"] for line in lines[:-1]] == ["1", "2", "3", "4"]
    whoisi = get(app, alice, "storage/bookmarks?sort=oldest", headers={"Accept": "application/whoisi"})
    assert whoisi.content_type == "application/whoisi"
    body, ids = whoisi.body, []
    while body:
        (length,) = struct.unpack(">I", body[:4])
        ids.append(json.loads(body[4:4 + length]))
        body = body[4 + length:]
    assert ids == ["1", "2", "3", "4"]
    assert get(app, alice, "storage/bookmarks", headers={"Accept": "*/*"}).content_type == (
        "application/json")


def test_unknown_collection_is_empty_list(app, alice):
    response = get(app, alice, "storage/nothing")
    assert response.json == [] and response.headers["X-Weave-Records"] == "0"
    assert get(app, alice, "info/collections").json == {}


@pytest.mark.parametrize("query", ["newer=abc", "older=nan", "limit=2.0", "offset=x",
                                   "index_above=z"])
def test_bad_query_values_are_400(app, alice, query):
    response = get(app, alice, "storage/bookmarks?" + query, status=400)
    assert "Invalid value" in response.text


# -- deletes -----------------------------------------------------------------------

def test_delete_item(app, alice, four):
    response = delete(app, alice, "storage/bookmarks/1")
    assert response.headers["X-Weave-Timestamp"] == response.body.decode()
    assert float(response.body) > float(four[-1])
    assert get(app, alice, "info/collections").json["bookmarks"] == float(response.body)
    get(app, alice, "storage/bookmarks/1", status=404)
    assert TIMESTAMP.match(delete(app, alice, "storage/bookmarks/nope").body.decode())


def test_delete_collection_with_filters(app, alice, four):
    delete(app, alice, "storage/bookmarks?ids=1,2")
    assert sorted(get(app, alice, "storage/bookmarks").json) == ["3", "4"]
    delete(app, alice, "storage/bookmarks?sort=index&limit=1")
    assert get(app, alice, "storage/bookmarks").json == ["3"]
    response = delete(app, alice, "storage/bookmarks")
    assert get(app, alice, "storage/bookmarks").json == []
    # A delete advances info/collections too.
    assert get(app, alice, "info/collections").json["bookmarks"] == float(response.body)
    assert TIMESTAMP.match(delete(app, alice, "storage/never").body.decode())


def test_delete_storage_needs_confirmation(app, alice, four):
    response = delete(app, alice, "storage", status=400)
    assert response.body == b"4" and response.content_type == "application/json"
    assert len(get(app, alice, "storage/bookmarks").json) == 4
    for value in ("1", "true"):
        put(app, alice, "prefs/p", {"payload": "x"})
        response = delete(app, alice, "storage", headers={"X-Confirm-Delete": value})
        assert TIMESTAMP.match(response.body.decode())
        assert get(app, alice, "info/collections").json == {}
    # Timestamps never go backwards after a wipe.
    assert float(put(app, alice, "bookmarks/a", {"payload": "x"}).body) > float(four[-1])


# -- quota ---------------------------------------------------------------------

def test_quota(make_test_app):
    app = make_test_app(**{"storage.quota_size": "2"})  # 2 KB
    account = register(app, "quota@example.com")
    response = put(app, account, "bookmarks/a", {"payload": "x" * 1024})
    assert float(response.headers["X-Weave-Quota-Remaining"]) == 2.0
    assert get(app, account, "info/quota").json == [1.0, 2]
    response = post(app, account, "bookmarks", [{"id": "b", "payload": "y" * 1536}])
    assert float(response.headers["X-Weave-Quota-Remaining"]) == 1.0
    # Now over quota: every write is refused with 14, deletes still work.
    assert put(app, account, "bookmarks/c", {"payload": "z"}, status=400).body == b"14"
    assert post(app, account, "bookmarks", [{"id": "c", "payload": "z"}], status=400).body == b"14"
    delete(app, account, "storage/bookmarks/b")
    put(app, account, "bookmarks/c", {"payload": "z"})


# -- authentication and routing -------------------------------------------------------

def test_storage_requires_matching_basic_auth(app, alice, bob):
    response = app.get(f"{alice.root}/info/collections", status=401)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Sync"'
    assert "X-Weave-Timestamp" in response.headers
    app.get(f"{alice.root}/info/collections", headers=bob.headers, status=401)
    wrong = {**alice.headers}
    wrong.update(__import__("tests.support", fromlist=["x"]).basic_auth(alice.username, "wrong"))
    app.get(f"{alice.root}/info/collections", headers=wrong, status=401)
    app.get(f"{alice.root}/info/collections", headers={"Authorization": "Bearer x"}, status=401)
    app.get(f"{alice.root}/info/collections", headers={"Authorization": "Basic !!!"}, status=401)


def test_every_api_prefix_and_trailing_slashes(app, alice):
    for prefix in ("1.1", "1.0", "1"):
        app.get(f"/{prefix}/{alice.username}/info/collections/", headers=alice.headers)


def test_unknown_paths_and_methods(app, alice):
    assert app.get("/", status=404).headers["X-Weave-Timestamp"]
    app.get(f"/2.0/{alice.username}/info/collections", headers=alice.headers, status=404)
    response = app.post(f"{alice.root}/info/collections", headers=alice.headers, status=405)
    assert response.headers["Allow"] == "GET"
    app.get(f"{alice.root}/storage", headers=alice.headers, status=405)


def test_heartbeat(app):
    response = app.get("/__heartbeat__")
    assert response.json["status"] == "ok"
    assert app.head("/__heartbeat__").status_int == 200


def test_a_write_for_a_deleted_account_already_past_authentication_is_401(app, alice):
    """The records of an account deleted meanwhile never come back (issue 12 item 2)."""
    put(app, alice, "bookmarks/a", {"payload": "kept?"})
    user_id = app.app.auth.get_user(alice.username).user_id
    app.app.storage.delete_user(user_id)  # as DELETE /user does first, before the account
    for call in (lambda: put(app, alice, "bookmarks/b", {"payload": "x"}, status=401),
                 lambda: post(app, alice, "bookmarks", [{"id": "c", "payload": "x"}],
                              status=401),
                 lambda: delete(app, alice, "storage/bookmarks", status=401),
                 lambda: delete(app, alice, "storage", status=401,
                                headers={"X-Confirm-Delete": "1"})):
        call()
    assert get(app, alice, "storage/bookmarks").json == []
