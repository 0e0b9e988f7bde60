"""Several nodes behind one User API, over WebTest: node/weave, check_node, backoff, downed.

Every app here shares one SQLite file, as a User API server and storage
nodes share the accounts and node databases in a real deployment.
"""

import pytest

from syncserver.app import make_app
from tests.controllers.conftest import register

A = "https://a.example.org/"
B = "https://b.example.org/"


@pytest.fixture
def user_api(make_test_app):
    """The server that hands out nodes (nodes.assignment = true)."""
    return make_test_app(**{"nodes.assignment": "true"})


@pytest.fixture
def node_list(user_api):
    return user_api.app.nodes


@pytest.fixture
def node_a(make_test_app, user_api):
    """Storage node A: refuses users of other nodes, reads its flags on every request."""
    return make_test_app(**{"nodes.this_node": "a.example.org", "auth.check_node": "true",
                            "nodes.cache_seconds": "0"})


def node_of(app, account):
    return app.get(f"/user/1.0/{account.username}/node/weave")


def test_unknown_user_is_404_and_no_node_is_null(user_api):
    alice = register(user_api, "alice@example.com")
    user_api.get("/user/1.0/nobody/node/weave", status=404)
    response = node_of(user_api, alice)
    assert response.content_type == "application/json"
    assert response.body == b"null"


def test_users_get_the_least_loaded_node_and_keep_it(user_api, node_list):
    node_list.add_node(A, 10)
    node_list.add_node(B, 10)
    alice = register(user_api, "alice@example.com")
    bob = register(user_api, "bob@example.com")
    carol = register(user_api, "carol@example.com")
    assert [node_of(user_api, who).text for who in (alice, bob, carol)] == [A, B, A]
    assert node_of(user_api, alice).content_type == "text/html"
    assert [node_of(user_api, who).text for who in (alice, bob, carol)] == [A, B, A]
    assert [node.current_load for node in node_list.list_nodes()] == [2, 1]


def test_full_nodes_give_null_and_deleting_a_user_frees_its_slot(user_api, node_list):
    node_list.add_node(A, 1)
    alice = register(user_api, "alice@example.com")
    bob = register(user_api, "bob@example.com")
    assert node_of(user_api, alice).text == A
    assert node_of(user_api, bob).body == b"null"
    user_api.delete(f"/user/1.0/{alice.username}", headers=alice.headers)
    assert node_list.get_node(A).current_load == 0
    assert node_of(user_api, bob).text == A


def test_check_node_refuses_users_of_other_nodes(user_api, node_list, node_a):
    node_list.add_node(B, 1)
    node_list.add_node(A, 5)
    alice = register(user_api, "alice@example.com")
    bob = register(user_api, "bob@example.com")
    # Never asked node/weave: no node yet, so not this one.
    node_a.get(f"{alice.root}/info/collections", headers=alice.headers, status=401)
    assert node_of(user_api, alice).text == B
    assert node_of(user_api, bob).text == A
    response = node_a.get(f"{alice.root}/info/collections", headers=alice.headers, status=401)
    assert "WWW-Authenticate" not in response.headers
    node_a.put_json(f"{bob.root}/storage/meta/global", {"payload": "x"}, headers=bob.headers)
    # Alice moves to A: served at once (refusals are never cached).
    node_list.unassign_all(B)
    node_list.update_node(B, available=False)
    assert node_of(user_api, alice).text == A
    node_a.get(f"{alice.root}/info/collections", headers=alice.headers, status=200)
    # The User API itself is not a storage node: no check there.
    user_api.get(f"{alice.root}/info/collections", headers=alice.headers, status=200)


def test_backoff_header_on_storage_responses_only(user_api, node_list, node_a):
    node_list.add_node(A, 5, backoff=120)
    alice = register(user_api, "alice@example.com")
    node_of(user_api, alice)
    response = node_a.get(f"{alice.root}/info/collections", headers=alice.headers)
    assert response.headers["X-Weave-Backoff"] == "120"
    denied = node_a.get(f"{alice.root}/info/collections", status=401)
    assert denied.headers["X-Weave-Backoff"] == "120"
    assert "X-Weave-Backoff" not in node_a.get(f"/user/1.0/{alice.username}").headers
    node_list.update_node(A, backoff=0)
    response = node_a.get(f"{alice.root}/info/collections", headers=alice.headers)
    assert "X-Weave-Backoff" not in response.headers


def test_downed_node_answers_503_before_authentication(user_api, node_list, node_a):
    node_list.add_node(A, 5)
    alice = register(user_api, "alice@example.com")
    node_of(user_api, alice)
    node_a.put_json(f"{alice.root}/storage/meta/global", {"payload": "kept"}, headers=alice.headers)
    node_list.update_node(A, downed=True)
    for headers in (alice.headers, {}):
        response = node_a.get(f"{alice.root}/storage/meta/global", headers=headers, status=503)
        assert response.headers["Retry-After"] == "1800"
        assert response.headers["X-Weave-Backoff"] == "1800"
        assert response.json == "server issue: node marked as down"
        assert "X-Weave-Timestamp" in response.headers
    # Users keep their downed node; nobody new is sent there.
    assert node_of(user_api, alice).text == A
    assert node_of(user_api, register(user_api, "bob@example.com")).body == b"null"
    node_list.update_node(A, downed=False)
    stored = node_a.get(f"{alice.root}/storage/meta/global", headers=alice.headers).json
    assert stored["payload"] == "kept"


def test_node_missing_from_the_list_has_no_flags(user_api, node_list, make_test_app):
    node_c = make_test_app(**{"nodes.this_node": "https://c.example.org/",
                              "nodes.cache_seconds": "0"})
    alice = register(user_api, "alice@example.com")
    response = node_c.get(f"{alice.root}/info/collections", headers=alice.headers)
    assert "X-Weave-Backoff" not in response.headers


def test_without_node_settings_nothing_changes(make_test_app):
    app = make_test_app()
    assert app.app.nodes is None and app.app.node_guard is None
    alice = register(app, "alice@example.com")
    assert node_of(app, alice).text == "http://localhost/"


@pytest.mark.parametrize("overrides,message", [
    ({"nodes.assignment": "true", "nodes.fallback_node": "x.example.org"}, "exclude each other"),
    ({"auth.check_node": "true"}, "needs nodes.this_node"),
    ({"nodes.assignment": "maybe"}, "nodes.assignment must be true or false"),
    ({"nodes.backend": "nosuch"}, "nodes.backend"),
])
def test_bad_node_settings_stop_start_up(sqlite_url, overrides, message):
    settings = {"storage.sqluri": sqlite_url, "storage.create_tables": "true", **overrides}
    with pytest.raises(SystemExit, match=message):
        make_app({}, **settings)
