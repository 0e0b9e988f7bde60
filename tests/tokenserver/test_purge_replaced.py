"""``syncserver-admin purge-expired`` deletes the storage of replaced Sync 1.5 uids.

Accounts are made and replaced the real way: token requests (access tokens of
the fake accounts server) to an app serving the tokenserver and the 1.5 API
on one database, records written with Hawk; then the admin command runs
against an ini file on the same database, on SQLite, MariaDB and PostgreSQL.
"""

import json
import threading

import pytest

from syncserver.storage import sync15_user_id
from syncserver.testing.sync15_client import Credentials, signed
from tests.admin.conftest import run_admin, write_ini
from tests.backends import sql_nodes, sql_storage
from tests.e2e.conftest import free_port
from tests.tokenserver.token_client import HOST, SECRET, TokenApp, client_state, fxa_uid


@pytest.fixture(scope="module")
def app(module_database_url, module_fxa):
    app = TokenApp.build(module_database_url, module_fxa, storage15__enabled="true")
    yield app
    app.close()


@pytest.fixture(scope="module")
def inis(tmp_path_factory, module_database_url, module_fxa):
    """``(ini with the default grace period, ini with none)`` for the admin command."""
    folder = tmp_path_factory.mktemp("purge-ini")
    url = module_database_url.replace("%", "%%")  # the ini file interpolates %
    keys = {"tokenserver.enabled": "true", "tokenserver.oauth_server_url": module_fxa.url,
            "global.master_secret": SECRET}
    return (write_ini(folder / "default.ini", url, **keys),
            write_ini(folder / "no-grace.ini", url,
                      **keys, **{"tokenserver.replaced_grace_seconds": "0"}))


@pytest.fixture(scope="module")
def storage(module_database_url):
    backend = sql_storage(module_database_url)
    yield backend
    backend.close()


class Device:
    """What a token response gives a client: its uid, credentials and node."""

    def __init__(self, response):
        body = response.json
        self.uid = body["uid"]
        self.credentials = Credentials(body["id"], body["key"])
        self.node = body["api_endpoint"].rsplit("/1.5/", 1)[0]

    def request(self, app, method, path, body=None, status=None):
        return signed(app.http, method, f"/1.5/{self.uid}{path}", self.credentials, self.node,
                      body=body, content_type="application/json" if body else None,
                      headers={"Host": HOST}, status=status)

    def put(self, app, item, payload, status=200):
        return self.request(app, "PUT", f"/storage/bookmarks/{item}",
                            json.dumps({"payload": payload}), status=status)

    def collections(self, app):
        return self.request(app, "GET", "/info/collections", status=200).json


def sign_in(app, account, version, status=200):
    """A token for ``account`` with keys of ``version`` (a higher version is a key change)."""
    stamp = 1_000 * version
    return Device(app.token(account, generation=stamp, keys_changed_at=stamp,
                            state=client_state(version), status=status))


def purge(ini, *args):
    result = run_admin(ini, "purge-expired", "--json", *args)
    assert result.out.startswith("{"), result
    return result, json.loads(result.out)["replaced_uids"]


def purged_at(app, uid):
    return app.execute("SELECT purged_at FROM token_users WHERE uid = :uid", uid=uid).scalar()


def test_a_key_change_deletes_the_old_uid_after_the_grace_period(app, inis, storage):
    default, no_grace = inis
    account = fxa_uid("purge-key-change")
    old = sign_in(app, account, 1)
    old.put(app, "a", "old data")
    new = sign_in(app, account, 2)
    assert new.uid != old.uid
    new.put(app, "b", "new data")

    # Within the grace period nothing goes: the old device still reads its data.
    result, replaced = purge(default)
    assert result.code == 0, result
    assert replaced["here"] == 0 and "bookmarks" in old.collections(app)
    assert run_admin(default, "purge-expired", "--dry-run").out.count("0 replaced") == 1

    dry = run_admin(no_grace, "purge-expired", "--dry-run")
    assert "replaced Sync 1.5 uid" in dry.out and "bookmarks" in old.collections(app)

    result, replaced = purge(no_grace)
    assert result.code == 0, result
    assert replaced["here"] >= 1 and replaced["failed"] == 0
    assert purged_at(app, old.uid) is not None and purged_at(app, new.uid) is None
    # The old uid's records are gone, and a late write with its token is refused;
    # the new uid is untouched.
    assert old.collections(app) == {}
    assert storage.get_storage_timestamp(sync15_user_id(old.uid)) in (0, None)
    old.put(app, "late", "written after the purge", status=401)
    assert "bookmarks" in new.collections(app)

    shown = json.loads(run_admin(no_grace, "token-user", "show", account, "--json").out)
    assert {row["uid"]: row["purged_at"] is not None for row in shown["rows"]} == {
        new.uid: False, old.uid: True}
    assert "deleted" in run_admin(no_grace, "token-user", "show", account).out

    # Idempotent: the next run finds nothing of this account to do.
    again, replaced = purge(no_grace)
    assert again.code == 0 and purged_at(app, old.uid) is not None
    assert old.uid not in _due_uids(app)
    # The account's rows stay: the old client state is still refused.
    stale = app.token(account, generation=3_000, keys_changed_at=3_000, state=client_state(1))
    assert stale.status_int == 401 and stale.json["status"] == "invalid-client-state"


def test_a_reassigned_account_loses_its_old_uid_storage(app, inis):
    _, no_grace = inis
    account = fxa_uid("purge-reassign")
    first = sign_in(app, account, 1)
    first.put(app, "a", "before the move")
    assert run_admin(no_grace, "token-user", "reassign", account).code == 0

    result, replaced = purge(no_grace)
    assert result.code == 0, result
    assert replaced["here"] >= 1 and replaced["failed"] == 0
    assert purged_at(app, first.uid) is not None
    assert first.collections(app) == {}
    # The next token request gets a new uid, which works.
    moved = sign_in(app, account, 1)
    assert moved.uid != first.uid
    moved.put(app, "b", "after the move")
    assert "bookmarks" in moved.collections(app)
    assert purged_at(app, moved.uid) is None


def test_an_unreachable_node_leaves_its_uids_due_and_fails(app, inis):
    _, no_grace = inis
    account = fxa_uid("purge-unreachable")
    first = sign_in(app, account, 1)
    # The account was on a node that is another process, which cannot be reached now.
    url = f"http://127.0.0.1:{free_port()}/"
    nodes = sql_nodes(app.users.database.url)
    nodes.add_node(url, capacity=10, available=False)  # no new account goes there
    try:
        node_id = app.execute("SELECT id FROM nodes WHERE url = :url", url=url).scalar()
        app.execute("UPDATE token_users SET node_id = :node WHERE uid = :uid",
                    node=node_id, uid=first.uid)
        app.execute("UPDATE token_users SET replaced_at = created_at WHERE uid = :uid",
                    uid=first.uid)
        result, replaced = purge(no_grace)
        assert result.code == 1
        assert replaced["failed"] >= 1 and url.rstrip("/") in replaced["failures"]
        assert "unreachable" in result.err and url.rstrip("/") in result.err
        assert purged_at(app, first.uid) is None
    finally:
        app.execute("UPDATE token_users SET node_id = NULL WHERE uid = :uid", uid=first.uid)
        nodes.remove_node(url)
        nodes.close()
    # With the node gone from the list (its data went with it) the uid is deleted here,
    # where a row without node points, and marked.
    result, _ = purge(no_grace)
    assert result.code == 0 and purged_at(app, first.uid) is not None


def test_purging_beside_token_requests_deletes_only_replaced_uids(app, inis):
    _, no_grace = inis
    accounts = [fxa_uid(f"purge-race-{number}") for number in range(4)]
    devices = {account: sign_in(app, account, 1) for account in accounts}
    errors = []

    def change_keys(account):
        try:
            for version in range(2, 5):
                devices[account] = sign_in(app, account, version)
                devices[account].put(app, f"v{version}", f"version {version}")
        except Exception as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=change_keys, args=(account,)) for account in accounts]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        assert run_admin(no_grace, "purge-expired").code == 0
    for worker in workers:
        worker.join()
    assert errors == []
    assert run_admin(no_grace, "purge-expired").code == 0
    for account in accounts:
        current = devices[account]
        assert purged_at(app, current.uid) is None
        assert "bookmarks" in current.collections(app)
        older = [row["uid"] for row in app.rows_of(account) if row["uid"] != current.uid]
        assert len(older) == 3
        assert all(purged_at(app, uid) is not None for uid in older)


def _due_uids(app):
    return {row.uid for row in app.execute(
        "SELECT uid FROM token_users WHERE replaced_at IS NOT NULL AND purged_at IS NULL")}
