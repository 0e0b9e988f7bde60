"""syncserver under Apache + mod_wsgi (daemon mode), at the root and under /sync/."""

import time

import pytest

from tests.e2e.conftest import Client, new_account
from tests.e2e.scenarios import first_sync

pytestmark = pytest.mark.deploy


def test_a_first_sync_at_the_root(apache):
    first_sync(apache.url)


def test_a_first_sync_under_a_path_prefix(apache):
    """Mounted at /sync: node/weave must send clients back under /sync/."""
    first_sync(apache.url + "/sync")


def test_the_authorization_header_reaches_the_app_and_the_access_log_hides_it(apache):
    email, username, password = new_account("apache")
    base = apache.url + "/sync/"
    registration = Client(base)
    response = registration.put(f"user/1.0/{username}", {"password": password, "email": email})
    assert (response.status, response.text) == (200, username)
    response = registration.get(f"user/1.0/{username}/node/weave")
    assert (response.status, response.text) == (200, f"http://127.0.0.1:{apache.port}/sync/")

    # WSGIPassAuthorization On: the app checks the password, so a wrong one is its 401.
    wrong = Client(f"{base}1.1/{username}/", username, "wrong password")
    response = wrong.get("info/collections")
    assert response.status == 401
    right = Client(f"{base}1.1/{username}/", username, password)
    assert right.put("storage/tabs/t1", {"payload": "tab"}).status == 200
    response = right.get("storage/tabs/t1")
    assert (response.status, response.json()["payload"]) == (200, "tab")

    expected = f'"GET /sync/1.1/{username}/storage/tabs/t1 HTTP/1.1" 200'
    lines = _access_log_lines(apache, expected)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"127.0.0.1 - {username} [")
    log = apache.access_log.read_text()
    assert password not in log
    assert right.auth_header().split()[1] not in log
    assert "Basic" not in log
    assert f'"GET /sync/1.1/{username}/info/collections HTTP/1.1" 401' in log


def _access_log_lines(apache, fragment, timeout=10.0):
    """Lines holding ``fragment``; the daemon writes each one as the response closes."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in apache.access_log.read_text().splitlines() if fragment in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
