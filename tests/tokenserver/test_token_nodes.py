"""Which node a Sync 1.5 account gets (reference §1.7), on the node list the server already has.

Nodes are managed through the real node backend (:mod:`syncserver.nodes.sql`),
as ``syncserver-admin node`` does; the tokenserver reads the same table.
Every test has a fresh database (the node list is global), on SQLite,
MariaDB and PostgreSQL.
"""

import pytest

from syncserver.protocol.tokens import parse_token
from syncserver.tokenserver.users import MAX_GENERATION
from tests.backends import sql_nodes
from tests.tokenserver.token_client import SECRET, client_state, error_body, fxa_uid

N1, N2, N3 = "https://node1.example.org/", "https://node2.example.org/", "https://node3.example.org/"


@pytest.fixture
def node_list(database_url):
    backend = sql_nodes(database_url)
    yield backend
    backend.close()


def node_of(response):
    """The node base URL a token response names (``api_endpoint`` minus ``/1.5/<uid>``)."""
    body = response.json
    base = body["api_endpoint"].rsplit("/1.5/", 1)[0]
    assert parse_token(body["id"], [SECRET]).node == base
    return base + "/"


def loads(node_list):
    return {node.url: node.current_load for node in node_list.list_nodes()}


def test_without_a_node_list_this_server_is_the_node(make_token_app):
    app = make_token_app()
    assert node_of(app.token(fxa_uid("self"), status=200)) == "http://sync.example.org/"
    configured = make_token_app(tokenserver__node_url="HTTPS://Sync.Example.com:443/x/")
    body = configured.token(fxa_uid("self-2"), status=200).json
    assert body["api_endpoint"] == f"https://sync.example.com/x/1.5/{body['uid']}"
    assert parse_token(body["id"], [SECRET]).node == "https://sync.example.com/x"


def test_the_least_loaded_node_is_chosen_and_counted(make_token_app, node_list):
    app = make_token_app()
    node_list.add_node(N1, capacity=10)
    node_list.add_node(N2, capacity=100)
    chosen = [node_of(app.token(fxa_uid(f"load-{number}"), status=200)) for number in range(4)]
    # 0/10 vs 0/100: the older node; then 1/10 vs 0/100, 1/10 vs 1/100, 1/10 vs 2/100.
    assert chosen == [N1, N2, N2, N2]
    assert loads(node_list) == {N1: 1, N2: 3}
    # Asking again moves nobody and counts nobody twice.
    assert node_of(app.token(fxa_uid("load-0"), status=200)) == N1
    assert loads(node_list) == {N1: 1, N2: 3}


@pytest.mark.parametrize("blocking", [
    dict(downed=True), dict(available=False), dict(backoff=30), dict(capacity=0)])
def test_no_node_can_take_a_new_account(make_token_app, node_list, blocking):
    app = make_token_app()
    node_list.add_node(N1, capacity=5)
    node_list.update_node(N1, **blocking)
    before = app.row_counts()
    response = app.token(fxa_uid("no-node"), status=503)
    assert response.json == error_body("internal-error", "internal", "", "Server error")
    assert response.headers["Retry-After"] == "120"
    assert response.headers["X-Timestamp"].isdigit()
    assert app.row_counts() == before


@pytest.mark.parametrize("change", [dict(available=False), dict(backoff=30)])
def test_an_account_stays_on_a_node_that_takes_no_new_users(make_token_app, node_list, change):
    app = make_token_app()
    node_list.add_node(N1, capacity=5)
    account = fxa_uid("stays")
    first = app.token(account, status=200).json
    node_list.add_node(N2, capacity=5)
    node_list.update_node(N1, **change)
    again = app.token(account, status=200).json
    assert again["uid"] == first["uid"] and node_of(app.token(account, status=200)) == N1
    assert node_of(app.token(fxa_uid("newcomer"), status=200)) == N2


def test_a_downed_node_moves_its_accounts_at_their_next_request(make_token_app, node_list):
    app = make_token_app()
    node_list.add_node(N1, capacity=5)
    account = fxa_uid("downed")
    first = app.token(account, status=200)
    node_list.add_node(N2, capacity=5)
    node_list.update_node(N1, downed=True)
    moved = app.token(account, status=200)
    assert node_of(moved) == N2 and moved.json["uid"] != first.json["uid"]
    assert loads(node_list) == {N1: 0, N2: 1}
    old, new = app.rows_of(account)
    assert old["replaced_at"] is not None and new["replaced_at"] is None
    # Same keys: the new row keeps generation, keys_changed_at and client state.
    assert (old["generation"], old["keys_changed_at"], old["client_state"]) == (
        new["generation"], new["keys_changed_at"], new["client_state"])
    assert app.token(account, status=200).json["uid"] == moved.json["uid"]


def test_a_removed_node_moves_its_accounts_at_their_next_request(make_token_app, node_list):
    app = make_token_app()
    node_list.add_node(N1, capacity=5)
    account = fxa_uid("removed")
    first = app.token(account, status=200).json["uid"]
    node_list.add_node(N2, capacity=5)
    assert node_list.remove_node(N1) == 0  # 1.1 assignments only: the 1.5 users are not its
    moved = app.token(account, status=200)
    assert node_of(moved) == N2 and moved.json["uid"] != first
    assert loads(node_list) == {N2: 1}


def test_a_removed_node_with_no_other_node_is_503_and_nothing_moves(make_token_app, node_list):
    app = make_token_app()
    node_list.add_node(N1, capacity=5)
    node_list.add_node(N2, capacity=5)
    node_list.update_node(N2, downed=True)
    account = fxa_uid("stranded")
    app.token(account, status=200)
    node_list.update_node(N1, downed=True)
    before = app.rows_of(account)
    assert app.token(account, status=503).headers["Retry-After"] == "120"
    assert app.rows_of(account) == before


def test_a_key_change_keeps_the_node_and_its_count(make_token_app, node_list):
    app = make_token_app()
    node_list.add_node(N1, capacity=5)
    node_list.add_node(N2, capacity=5)
    account = fxa_uid("key-change")
    first = app.token(account, generation=1000, keys_changed_at=1000, state=client_state(1),
                      status=200)
    before = loads(node_list)
    second = app.token(account, generation=2000, keys_changed_at=2000, state=client_state(2),
                       status=200)
    assert node_of(second) == node_of(first) and second.json["uid"] != first.json["uid"]
    assert loads(node_list) == before


def test_accounts_of_this_server_move_to_nodes_added_later(make_token_app, node_list):
    app = make_token_app()
    account = fxa_uid("self-then-node")
    first = app.token(account, status=200).json["uid"]
    node_list.add_node(N1, capacity=5)
    moved = app.token(account, status=200)
    assert node_of(moved) == N1 and moved.json["uid"] != first
    assert loads(node_list) == {N1: 1}


def test_a_retired_account_whose_node_is_gone_is_500(make_token_app, node_list):
    app = make_token_app()
    node_list.add_node(N1, capacity=5)
    account = fxa_uid("retired")
    app.token(account, status=200)
    app.execute("UPDATE token_users SET generation = :max, node_id = NULL WHERE fxa_uid = :fxa",
                max=MAX_GENERATION, fxa=account)
    before = app.row_counts()
    response = app.token(account, generation=2000, status=500)
    assert response.json == error_body("internal-error", "internal", "", "Server error")
    assert app.row_counts() == before


def test_spread_over_three_nodes_by_fraction_of_capacity(make_token_app, node_list):
    app = make_token_app()
    for url, capacity in ((N1, 2), (N2, 4), (N3, 8)):
        node_list.add_node(url, capacity=capacity)
    for number in range(14):
        app.token(fxa_uid(f"spread-{number}"), status=200)
    assert loads(node_list) == {N1: 2, N2: 4, N3: 8}
    assert app.token(fxa_uid("spread-full"), status=503).json["status"] == "internal-error"
