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
            assert route.needs_auth, route
