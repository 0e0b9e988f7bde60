"""``syncserver-admin user ...`` on real SQLite and MariaDB databases."""

import json

import pytest
from webtest import TestApp

from syncserver.admin import users as users_module
from syncserver.admin.users import parse_quota
from syncserver.app import build_app
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import ItemWrite
from tests.admin.conftest import run_admin
from tests.support import basic_auth, sync_username

PASSWORD = "correct horse battery"


def add(ini, name, password=PASSWORD, *extra):
    return run_admin(ini, "user", "add", name, "--password-stdin", *extra, stdin=password + "\n")


def test_add_with_password_on_stdin(admin_ini, backends):
    result = add(admin_ini, "alice")
    assert result.code == 0, result
    assert "Created account alice" in result.out
    _storage, auth = backends
    assert auth.authenticate("alice", PASSWORD).username == "alice"


def test_add_by_email_derives_the_username_as_clients_do(admin_ini, backends):
    result = add(admin_ini, "Alice@Example.org")
    assert result.code == 0, result
    user = backends[1].get_user(sync_username("alice@example.org"))
    assert user.email == "Alice@Example.org"


def test_add_with_password_file_and_registration_closed(tmp_path, admin_url, backends):
    from tests.admin.conftest import write_ini

    ini = write_ini(tmp_path / "closed.ini", admin_url, **{
        "auth.allow_new_users": "false", "auth.strict_usernames": "false"})
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    result = run_admin(ini, "user", "add", "bob", "--password-file", str(secret))
    assert result.code == 0, result
    assert backends[1].authenticate("bob", PASSWORD) is not None


def test_add_refusals(admin_ini, backends):
    assert add(admin_ini, "alice").code == 0
    cases = [
        (add(admin_ini, "alice"), "already exists"),
        (add(admin_ini, "carol", "short"), "too weak"),
        (add(admin_ini, "carol", "carol"), "too weak"),
        (run_admin(admin_ini, "user", "add", "carol"), "no password given"),
        (add(admin_ini, "not a name!"), "neither a username"),
    ]
    for result, message in cases:
        assert result.code == 1, result
        assert message in result.err
        assert result.err.startswith("syncserver-admin: ") and result.err.count("\n") == 1
        assert "Traceback" not in result.err
    assert backends[1].get_user("carol") is None


@pytest.fixture
def strict_ini(tmp_path, admin_url):
    """The default: auth.strict_usernames on."""
    from tests.admin.conftest import write_ini

    return write_ini(tmp_path / "strict.ini", admin_url)


def test_strict_usernames_are_the_hash_of_an_address(strict_ini, backends):
    for result in (add(strict_ini, "alice"),
                   add(strict_ini, "carol", PASSWORD, "--email", "c@example.org")):
        assert result.code == 1, result
        assert "auth.strict_usernames" in result.err and "Sync hash" in result.err
        assert result.err.startswith("syncserver-admin: ") and result.err.count("\n") == 1
    assert backends[1].get_user("alice") is None and backends[1].get_user("carol") is None
    by_address = add(strict_ini, "alice@example.org")
    assert by_address.code == 0, by_address
    assert "no e-mail address" not in by_address.out
    hashed = sync_username("bob@example.org")
    assert add(strict_ini, hashed, PASSWORD, "--email", "bob@example.org").code == 0
    assert backends[1].get_user(hashed).email == "bob@example.org"


def test_a_plain_username_without_address_is_told_it_cannot_reset(admin_ini, backends):
    result = add(admin_ini, "erin")
    assert result.code == 0, result
    assert "cannot reset" in result.out


def test_add_asks_twice_on_a_terminal(admin_ini, backends, monkeypatch):
    answers = iter([PASSWORD, "something else"])
    monkeypatch.setattr(users_module.getpass, "getpass", lambda *a, **k: next(answers))
    result = run_admin(admin_ini, "user", "add", "dave", tty=True)
    assert result.code == 1 and "differ" in result.err
    answers = iter([PASSWORD, PASSWORD])
    result = run_admin(admin_ini, "user", "add", "dave", tty=True)
    assert result.code == 0, result
    assert backends[1].authenticate("dave", PASSWORD) is not None


def test_list_pages_through_every_account(admin_ini, backends, monkeypatch):
    names = [f"user{n:02d}" for n in range(7)]
    for name in names:
        backends[1].create_user(name, PASSWORD, f"{name}@example.org")
    backends[1].set_enabled("user03", False)
    monkeypatch.setattr(users_module, "LIST_PAGE_SIZE", 2)
    result = run_admin(admin_ini, "user", "list")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].split() == ["USER", "ID", "USERNAME", "STATUS", "EMAIL"]
    assert [line.split()[1] for line in lines[1:]] == names
    assert "disabled" in lines[4] and "user03@example.org" in lines[4]

    listed = json.loads(run_admin(admin_ini, "user", "list", "--json", "--after", "user01",
                                  "--limit", "3").out)
    assert [user["username"] for user in listed] == ["user02", "user03", "user04"]
    assert listed[1]["enabled"] is False and isinstance(listed[0]["created_at"], int)


def test_show_prints_account_quota_and_collections(admin_ini, backends):
    storage, auth = backends
    user = auth.create_user("alice", PASSWORD, "alice@example.org")
    storage.set_items(user.user_id, "bookmarks", [ItemWrite("a", payload="x" * 100),
                                                   ItemWrite("b", payload="y" * 50)],
                      now_centiseconds())
    storage.set_items(user.user_id, "tabs", [ItemWrite("t", payload="z")], now_centiseconds())
    result = run_admin(admin_ini, "user", "show", "alice")
    assert result.code == 0, result
    assert "alice@example.org" in result.out
    assert "5120 KB (storage.quota_size)" in result.out
    assert "151 bytes" in result.out
    rows = {line.split()[0]: line.split() for line in result.out.splitlines()
            if line.startswith(("bookmarks", "tabs"))}
    assert rows["bookmarks"][1:3] == ["2", "150"]
    assert rows["tabs"][1:3] == ["1", "1"]

    shown = json.loads(run_admin(admin_ini, "user", "show", "alice", "--json").out)
    assert shown["user_id"] == user.user_id and shown["used_bytes"] == 151
    assert shown["quota_kb"] == 5120 and shown["own_quota_kb"] is None
    assert [c["name"] for c in shown["collections"]] == ["bookmarks", "tabs"]

    missing = run_admin(admin_ini, "user", "show", "nobody")
    assert missing.code == 1 and "no account named nobody" in missing.err


def test_disable_and_enable(admin_ini, backends):
    backends[1].create_user("alice", PASSWORD, None)
    assert run_admin(admin_ini, "user", "disable", "alice").code == 0
    assert backends[1].authenticate("alice", PASSWORD) is None
    assert run_admin(admin_ini, "user", "enable", "alice").code == 0
    assert backends[1].authenticate("alice", PASSWORD) is not None
    result = run_admin(admin_ini, "user", "disable", "nobody")
    assert result.code == 1 and "no account named nobody" in result.err


def test_delete_removes_the_account_and_its_data(admin_ini, backends):
    storage, auth = backends
    alice = auth.create_user("alice", PASSWORD, None)
    bob = auth.create_user("bob", PASSWORD, None)
    for user in (alice, bob):
        storage.set_items(user.user_id, "bookmarks", [ItemWrite("a", payload="x")],
                          now_centiseconds())
    refused = run_admin(admin_ini, "user", "delete", "alice")
    assert refused.code == 1 and "--yes" in refused.err
    declined = run_admin(admin_ini, "user", "delete", "alice", stdin="n\n", tty=True)
    assert declined.code == 1 and auth.get_user("alice") is not None

    result = run_admin(admin_ini, "user", "delete", "alice", stdin="y\n", tty=True)
    assert result.code == 0, result
    assert auth.get_user("alice") is None
    assert storage.get_collection_counts(alice.user_id) == {}
    assert storage.get_collection_counts(bob.user_id) == {"bookmarks": 1}


def test_set_password(admin_ini, backends):
    backends[1].create_user("alice", PASSWORD, None)
    result = run_admin(admin_ini, "user", "set-password", "alice", "--password-stdin",
                       stdin="a brand new secret\n")
    assert result.code == 0, result
    assert backends[1].authenticate("alice", PASSWORD) is None
    assert backends[1].authenticate("alice", "a brand new secret") is not None


def test_parse_quota():
    assert parse_quota("512") == 512
    assert parse_quota("2M") == 2048
    assert parse_quota("1g") == 1024 * 1024
    assert parse_quota("unlimited") == 0
    assert parse_quota("default") is None
    with pytest.raises(Exception, match="not a quota"):
        parse_quota("lots")


def test_set_quota_is_honoured_by_the_storage_api(admin_url, tmp_path, backends):
    """Quotas off server-wide, then one user gets 1 KB: their writes hit code 14."""
    from tests.admin.conftest import write_ini

    ini = write_ini(tmp_path / "noquota.ini", admin_url)
    storage, auth = backends
    alice = auth.create_user("alice", PASSWORD, None)
    app = TestApp(build_app({"storage.sqluri": admin_url, "auth.sqluri": admin_url}))
    headers = basic_auth("alice", PASSWORD)
    url = "/1.1/alice/storage/bookmarks/"
    app.put_json(url + "a", {"payload": "x" * 2000}, headers=headers)
    assert app.get("/1.1/alice/info/quota", headers=headers).json[1] is None

    assert run_admin(ini, "user", "set-quota", "alice", "1").code == 0
    assert storage.get_user_quota(alice.user_id) == 1
    assert app.get("/1.1/alice/info/quota", headers=headers).json[1] == 1
    over = app.put_json(url + "b", {"payload": "y"}, headers=headers, status=400)
    assert over.json == 14

    assert run_admin(ini, "user", "set-quota", "alice", "unlimited").code == 0
    app.put_json(url + "b", {"payload": "y"}, headers=headers)
    shown = run_admin(ini, "user", "show", "alice")
    assert "none (its own)" in shown.out

    assert run_admin(ini, "user", "set-quota", "alice", "default").code == 0
    assert storage.get_user_quota(alice.user_id) is None
    bad = run_admin(ini, "user", "set-quota", "alice", "lots")
    assert bad.code == 1 and "not a quota" in bad.err
    app.app.close()
