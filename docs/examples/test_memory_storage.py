"""The example plugin passes the project's storage conformance suite (run by CI)."""

import pytest
from memory_storage import MemoryStorage

from syncserver.testing.storage_conformance import StorageConformanceTests


class TestMemoryStorage(StorageConformanceTests):
    @pytest.fixture
    def storage(self):
        backend = MemoryStorage()
        yield backend
        backend.close()


def test_server_runs_on_the_plugin_named_by_dotted_path(tmp_path):
    """What a user does: name the class in the ini file, then sync through the API."""
    import webtest

    from syncserver.app import build_app
    from tests.support import basic_auth, sync_username

    database = f"sqlite:///{tmp_path / 'auth.db'}"
    app = build_app({
        "storage.backend": "memory_storage.MemoryStorage",
        "auth.sqluri": database,
        "auth.create_tables": "true",
    })
    assert isinstance(app.storage, MemoryStorage)
    client = webtest.TestApp(app)
    email = "plugin@example.com"
    username = sync_username(email)
    client.put_json(f"/user/1.0/{username}", {"email": email, "password": "correct horse 1"})
    headers = basic_auth(username, "correct horse 1")
    client.put_json(f"/1.1/{username}/storage/bookmarks/a", {"payload": "secret"}, headers=headers)
    stored = client.get(f"/1.1/{username}/storage/bookmarks/a", headers=headers).json
    assert stored["payload"] == "secret"
    assert set(client.get(f"/1.1/{username}/info/collections", headers=headers).json) == {
        "bookmarks"}
    app.close()
