"""The example auth plugin passes the project's auth conformance suite (run by CI)."""

import argon2
import pytest
from file_auth import FileAuth

from syncserver.auth.passwords import PasswordHasher
from syncserver.testing.auth_conformance import AuthConformanceTests

#: Cheap argon2 parameters keep the tests fast; never use them in production.
CHEAP_HASHER = PasswordHasher(argon2.Parameters(
    type=argon2.Type.ID, version=19, salt_len=16, hash_len=32,
    time_cost=1, memory_cost=8, parallelism=1))


class TestFileAuth(AuthConformanceTests):
    @pytest.fixture
    def auth(self, tmp_path):
        backend = FileAuth(str(tmp_path / "accounts.json"), hasher=CHEAP_HASHER)
        yield backend
        backend.close()


def test_server_runs_on_the_plugin_named_by_dotted_path(tmp_path):
    """What a user does: name the class and its file in the ini file, then sync."""
    import webtest

    from syncserver.app import build_app
    from tests.support import basic_auth, sync_username

    accounts = tmp_path / "accounts.json"
    app = build_app({
        "auth.backend": "file_auth.FileAuth",
        "auth.accounts_file": str(accounts),
        "storage.sqluri": f"sqlite:///{tmp_path / 'storage.db'}",
        "storage.create_tables": "true",
        "throttle.enabled": "false",
    })
    assert isinstance(app.auth.backend, FileAuth)
    client = webtest.TestApp(app)
    email = "plugin@example.com"
    username = sync_username(email)
    client.put_json(f"/user/1.0/{username}", {"email": email, "password": "correct horse 1"})
    assert '"$argon2id$' in accounts.read_text()
    headers = basic_auth(username, "correct horse 1")
    client.put_json(f"/1.1/{username}/storage/bookmarks/a", {"payload": "secret"}, headers=headers)
    assert client.get(f"/1.1/{username}/storage/bookmarks/a", headers=headers).json[
        "payload"] == "secret"
    client.get(f"/1.1/{username}/info/collections", headers=basic_auth(username, "wrong"),
               status=401)
    app.close()
