"""The routing table: what each URL reaches."""

import pytest

from syncserver import routing

MAPPER = routing.build_mapper()


@pytest.mark.parametrize("method,path,action,arguments", [
    ("GET", "/1.1/bob/info/collections", "get_collection_timestamps", {"username": "bob"}),
    ("GET", "/1.0/bob/info/quota", "get_quota", {"username": "bob"}),
    ("GET", "/1/bob/info/collection_counts", "get_collection_counts", {"username": "bob"}),
    ("GET", "/1.1/bob/storage/bookmarks", "get_collection",
     {"username": "bob", "collection": "bookmarks"}),
    ("PUT", "/1.1/bob/storage/bookmarks", "post_collection",
     {"username": "bob", "collection": "bookmarks"}),
    ("PUT", "/1.1/bob/storage/bookmarks/{a b}", "put_item",
     {"username": "bob", "collection": "bookmarks", "item": "{a b}"}),
    ("DELETE", "/1.1/bob/storage", "delete_storage", {"username": "bob"}),
    ("GET", "/user/1.0/bob", "user_exists", {"username": "bob"}),
    ("GET", "/user/1/bob/node/weave", "get_node", {"username": "bob"}),
    ("POST", "/user/1.0/bob/password", "change_password", {"username": "bob"}),
    ("HEAD", "/__heartbeat__", "heartbeat", {}),
])
def test_routes(method, path, action, arguments):
    route, found = routing.match(MAPPER, method, path)
    assert route.action == action
    assert found == arguments


@pytest.mark.parametrize("method,path,allowed", [
    ("POST", "/1.1/bob/info/collections", ["GET"]),
    ("GET", "/1.1/bob/storage", ["DELETE"]),
    ("HEAD", "/1.1/bob/storage/x", ["DELETE", "GET", "POST", "PUT"]),
    ("GET", "/2.0/bob/info/collections", []),
    ("GET", "/user/1.1/bob", []),
    ("GET", "/1.1/bob@x/info/collections", []),
    ("GET", "/", []),
])
def test_unmatched(method, path, allowed):
    route, found = routing.match(MAPPER, method, path)
    assert route is None and found == allowed


def test_auth_is_required_on_every_storage_route():
    for route in routing.ROUTES:
        if route.controller == "storage":
            assert route.auth == routing.BASIC, route


def test_every_sync15_route_but_the_preflight_needs_hawk():
    for route in routing.ROUTES:
        if route.controller == "storage15" and route.action != "preflight":
            assert route.auth == routing.HAWK, route


@pytest.mark.parametrize(("method", "path", "action", "arguments"), [
    ("GET", "/1.5/42/info/collections", "get_collection_timestamps", {"uid": "42"}),
    ("GET", "/1.5/42/info/configuration", "get_configuration", {"uid": "42"}),
    ("DELETE", "/1.5/42", "delete_storage", {"uid": "42"}),
    ("DELETE", "/1.5/42/storage", "delete_storage", {"uid": "42"}),
    ("POST", "/1.5/42/storage/bookmarks", "post_collection",
     {"uid": "42", "collection": "bookmarks"}),
    ("PUT", "/1.5/42/storage/meta/global", "put_item",
     {"uid": "42", "collection": "meta", "item": "global"}),
    ("OPTIONS", "/1.5/42/storage/meta/global", "preflight", {}),
])
def test_sync15_routes(method, path, action, arguments):
    route, found = routing.match(MAPPER, method, path)
    assert route.controller == "storage15" and route.action == action
    assert found == arguments


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PATCH", "/1.5/42/storage/bookmarks", ["DELETE", "GET", "OPTIONS", "POST"]),
    ("GET", "/1.5/42", ["DELETE", "OPTIONS"]),
    ("GET", "/1.5/12345678901/info/collections", []),
    ("GET", "/1.5/abc/info/collections", []),
    ("GET", "/1.5/42/storage/a/b/c", []),
])
def test_sync15_wrong_methods_and_uids(method, path, allowed):
    route, found = routing.match(MAPPER, method, path)
    assert route is None and found == allowed


_SEGMENTS = ["bob", "a.b_c-9", "bookmarks", "{a b}", "x y", "é", "a+b", "a%2Fb", "%41", "", ".",
             "..", "info", "collections", "storage", "tabs!*'()", "a;b=c", "~u"]


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE", "HEAD"])
def test_the_hot_path_agrees_with_routes(method):
    """The Sync 1.1 fast path answers exactly what Routes answers, for odd names too."""
    paths = []
    for api in ("1.1", "1.0", "1", "1.5", "2"):
        for user in ("bob", "b@b", "a.b_c-9"):
            paths += [f"/{api}/{user}/info/collections", f"/{api}/{user}/info/quota",
                      f"/{api}/{user}/storage", f"/{api}/{user}/info/collections/x"]
            for collection in _SEGMENTS:
                paths.append(f"/{api}/{user}/storage/{collection}")
                for item in _SEGMENTS:
                    paths.append(f"/{api}/{user}/storage/{collection}/{item}")
    hot = 0
    for path in paths:
        expected = routing.match_routes(MAPPER, method, path)
        assert routing.match(MAPPER, method, path) == expected, path
        hot += routing._hot_match(method, path) is not None
    if method != "HEAD":
        assert hot > 50  # the fast path was taken, not only Routes
