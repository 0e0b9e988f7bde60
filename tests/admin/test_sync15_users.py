"""``syncserver-admin token-user ...``, ``stats`` and ``check`` for the tokenserver.

The accounts are made the real way: token requests to an app on the same
database, with access tokens of the fake accounts server. Each command runs
through ``syncserver.admin.cli.main`` against an ini file, on SQLite and
MariaDB.
"""

import json

import pytest

from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import ItemWrite, sync15_user_id
from tests.admin.conftest import run_admin, write_ini
from tests.backends import sql_nodes
from tests.fxa_server import FakeAccountsServer
from tests.tokenserver.token_client import TokenApp, client_state, error_body, fxa_uid

ALICE, BOB = fxa_uid("admin-alice"), fxa_uid("admin-bob")


@pytest.fixture
def fxa():
    server = FakeAccountsServer().start()
    yield server
    server.stop()


@pytest.fixture
def token_app(admin_url, fxa):
    app = TokenApp.build(admin_url, fxa)
    yield app
    app.close()


@pytest.fixture
def ini(tmp_path, admin_url, fxa):
    return write_ini(tmp_path / "server.ini", admin_url, **{
        "tokenserver.enabled": "true", "tokenserver.oauth_server_url": fxa.url,
        "tokenserver.oauth_timeout": "2"})


def test_list_and_show(ini, token_app):
    assert run_admin(ini, "token-user", "list").out == "no Sync 1.5 users\n"
    alice = token_app.token(ALICE, status=200).json["uid"]
    bob_first = token_app.token(BOB, generation=1000, keys_changed_at=1000,
                                state=client_state(1), status=200).json["uid"]
    bob = token_app.token(BOB, generation=2000, keys_changed_at=2000, state=client_state(2),
                          status=200).json["uid"]

    result = run_admin(ini, "token-user", "list")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].split() == ["UID", "FXA", "UID", "NODE", "STATE", "CREATED"]
    assert [line.split()[:4] for line in lines[1:]] == [
        [str(alice), ALICE, "(this", "server)"], [str(bob), BOB, "(this", "server)"]]
    listed = json.loads(run_admin(ini, "token-user", "list", "--json").out)
    assert [(item["fxa_uid"], item["uid"], item["blocked"]) for item in listed] == [
        (ALICE, alice, False), (BOB, bob, False)]

    by_fxa_uid = run_admin(ini, "token-user", "show", BOB)
    by_uid = run_admin(ini, "token-user", "show", str(bob_first))
    assert by_fxa_uid.code == 0 and by_fxa_uid.out == by_uid.out
    assert f"client state     {client_state(2)}" in by_fxa_uid.out
    assert "generation       2000" in by_fxa_uid.out
    shown = json.loads(run_admin(ini, "token-user", "show", BOB, "--json").out)
    assert [row["uid"] for row in shown["rows"]] == [bob, bob_first]
    assert shown["rows"][1]["replaced_at"] is not None


def test_unknown_accounts(ini, token_app):
    for argument in ("123", "0123456789abcdef0123456789abcdef"):
        result = run_admin(ini, "token-user", "show", argument)
        assert result.code == 1 and "no Sync 1.5 user" in result.err
    result = run_admin(ini, "token-user", "reassign", "not an id!")
    assert result.code == 1 and "neither" in result.err


def test_block_and_unblock(ini, token_app):
    uid = token_app.token(ALICE, status=200).json["uid"]
    assert run_admin(ini, "token-user", "block", str(uid)).code == 0
    assert token_app.token(ALICE, status=401).json == error_body("new-users-disabled")
    assert "blocked" in run_admin(ini, "token-user", "list").out
    assert run_admin(ini, "token-user", "unblock", ALICE).code == 0
    assert token_app.token(ALICE, status=200).json["uid"] == uid
    # Before the account's first token, by its FxA uid.
    assert run_admin(ini, "token-user", "block", BOB).code == 0
    token_app.token(BOB, status=401)
    assert BOB in run_admin(ini, "token-user", "list").out


def test_delete_removes_every_uid_and_its_records(ini, token_app, admin_url):
    from tests.backends import sql_storage

    first = token_app.token(ALICE, generation=1000, keys_changed_at=1000,
                            state=client_state(1), status=200).json["uid"]
    second = token_app.token(ALICE, generation=2000, keys_changed_at=2000,
                             state=client_state(2), status=200).json["uid"]
    bob = token_app.token(BOB, status=200).json["uid"]
    storage = sql_storage(admin_url)
    try:
        for uid in (first, second, bob):
            storage.set_items(sync15_user_id(uid), "bookmarks",
                              [ItemWrite("b1", payload="secret")], now_centiseconds())
        refused = run_admin(ini, "token-user", "delete", ALICE)
        assert refused.code == 1 and "--yes" in refused.err
        assert run_admin(ini, "token-user", "delete", ALICE, stdin="n\n", tty=True).code == 1
        result = run_admin(ini, "token-user", "delete", ALICE, "--yes")
        assert result.code == 0, result
        assert f"uids {first}, {second}" in result.out
        for uid in (first, second):
            assert storage.get_collection_timestamps(sync15_user_id(uid)) == {}
        assert "bookmarks" in storage.get_collection_timestamps(sync15_user_id(bob))
    finally:
        storage.close()
    assert token_app.rows_of(ALICE) == []
    # The account may come back, as a new one.
    assert token_app.token(ALICE, status=200).json["uid"] not in (first, second)


def test_reassign_gives_a_new_uid_on_the_best_node(ini, token_app, admin_url):
    nodes = sql_nodes(admin_url)
    try:
        nodes.add_node("https://node1.example.org/", capacity=10)
        first = token_app.token(ALICE, status=200).json
        nodes.add_node("https://node2.example.org/", capacity=10)
        result = run_admin(ini, "token-user", "reassign", ALICE)
        assert result.code == 0 and str(first["uid"]) in result.out
        assert "moves at next request" in run_admin(ini, "token-user", "list").out
        second = token_app.token(ALICE, status=200).json
        assert second["uid"] != first["uid"]
        assert second["api_endpoint"].startswith("https://node2.example.org/1.5/")
        loads = {node.url: node.current_load for node in nodes.list_nodes()}
        assert loads == {"https://node1.example.org/": 0, "https://node2.example.org/": 1}
        assert "https://node2.example.org/" in run_admin(ini, "token-user", "show", ALICE).out
    finally:
        nodes.close()


def test_stats_count_the_users_per_node(ini, token_app, admin_url):
    token_app.token(ALICE, status=200)
    nodes = sql_nodes(admin_url)
    try:
        nodes.add_node("https://node1.example.org/", capacity=10)
        token_app.token(BOB, status=200)
    finally:
        nodes.close()
    result = run_admin(ini, "stats")
    assert result.code == 0, result
    assert "Sync 1.5 users: 2" in result.out
    table = [line.split() for line in result.out.split("Sync 1.5 users: 2", 1)[1].splitlines()]
    # Alice, on this server before the node list existed, counts there until she moves.
    assert ["https://node1.example.org/", "1"] in table and ["(this", "server)", "1"] in table
    summary = json.loads(run_admin(ini, "stats", "--json").out)
    assert summary["sync15_users"] == {
        "total": 2, "by_node": {"https://node1.example.org/": 1, "(this server)": 1}}


def test_check_covers_the_accounts_server_and_the_users(ini, token_app, fxa):
    token_app.token(ALICE, status=200)
    result = run_admin(ini, "check")
    assert result.code == 0, result
    assert "1 Sync 1.5 user(s)" in result.out
    assert f"1 RSA signing key(s) at {fxa.url}/jwks" in result.out
    fxa.stop()
    failed = run_admin(ini, "check")
    assert failed.code == 1
    assert any(line.startswith("FAIL") and "accounts" in line for line in failed.out.splitlines())
    assert "check failed: accounts" in failed.err
