"""``migrate --from weave-minimal``: data written by the real weave-minimal 1.5.1.

weave-minimal is installed from PyPI into its own virtualenv
(``.venv-weave-minimal`` at the top of the checkout, kept between runs), run
as a server on a free port, and given an account and records by a client
over HTTP, as a browser would. Its data directory is then migrated and the
same client continues against syncserver.
"""

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import service_missing
from tests.importers.conftest import Server, run_admin, write_ini
from tests.services import free_port, wait_for_port
from tests.support import basic_auth, sync_username

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-weave-minimal"
PACKAGES = ["weave-minimal==1.5.1", "werkzeug==0.16.1", "setuptools<81"]
EMAIL = "moving@example.com"
USERNAME = sync_username(EMAIL)
PASSWORD = "weave minimal password"


@pytest.fixture(scope="session")
def weave_minimal_program():
    program = VENV / "bin" / "weave-minimal"
    if not program.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                           capture_output=True, timeout=120)
            subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES], check=True,
                           capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as error:
            service_missing("weave-minimal from PyPI", getattr(error, "stderr", error))
    return program


class WeaveClient:
    """A Sync 1.1 client speaking HTTP to a base URL."""

    def __init__(self, base):
        self.base = base
        self.auth = basic_auth(USERNAME, PASSWORD)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={**self.auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        try:
            return json.loads(text)
        except ValueError:
            return text


@pytest.fixture
def weave_minimal_data(weave_minimal_program, tmp_path):
    """Run weave-minimal, sync a client to it, stop it; returns (data dir, what the client saw)."""
    data_dir = tmp_path / "weave-data"
    port = free_port()
    process = subprocess.Popen(
        [str(weave_minimal_program), "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--enable-registration"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        if not wait_for_port(port, process=process):
            service_missing("weave-minimal", "the server did not start")
        client = WeaveClient(f"http://127.0.0.1:{port}")
        client.call("PUT", f"/user/1.0/{USERNAME}", {"password": PASSWORD, "email": EMAIL})
        client.call("POST", f"/1.1/{USERNAME}/storage/bookmarks", [
            {"id": f"bm{i}", "payload": f"bookmark {i}", "sortindex": i, "parentid": "menu"}
            for i in range(20)])
        client.call("PUT", f"/1.1/{USERNAME}/storage/meta/global", {"payload": '{"syncID":"s"}'})
        client.call("POST", f"/1.1/{USERNAME}/storage/tabs", [
            {"id": "tabs1", "payload": "open tabs", "ttl": 3600}])
        last_sync = client.call("GET", f"/1.1/{USERNAME}/info/collections")["bookmarks"]
        time.sleep(0.05)  # weave-minimal stamps with time.time() rounded to centiseconds
        client.call("POST", f"/1.1/{USERNAME}/storage/bookmarks", [
            {"id": "bm-late", "payload": "after the last sync", "sortindex": 99}])
        seen = {
            "info": client.call("GET", f"/1.1/{USERNAME}/info/collections"),
            "bookmarks": client.call("GET", f"/1.1/{USERNAME}/storage/bookmarks?full=1"),
            "last_sync": last_sync,
        }
    finally:
        process.kill()
        process.wait()
    assert len(os.listdir(data_dir)) == 1  # one SQLite file for the account
    return data_dir, seen


def test_a_weave_minimal_client_continues_on_syncserver(weave_minimal_data, tmp_path,
                                                        cheap_hashes):
    data_dir, seen = weave_minimal_data
    new_url = f"sqlite:///{tmp_path / 'new.db'}"
    ini = write_ini(tmp_path / "new.ini", new_url)
    code, out, err = run_admin("-c", ini, "migrate", "--from", "weave-minimal", str(data_dir))
    assert (code, err) == (0, ""), err
    assert "accounts created: 1" in out and "records: 23" in out

    server = Server(new_url)
    client = server.client
    headers = basic_auth(USERNAME, PASSWORD)  # the weave-minimal password still works
    assert client.get(f"/1.1/{USERNAME}/info/collections", headers=headers).json == seen["info"]
    full = client.get(f"/1.1/{USERNAME}/storage/bookmarks?full=1", headers=headers).json

    def by_id(records):
        return sorted(records, key=lambda record: record["id"])

    assert by_id(full) == by_id(seen["bookmarks"])
    newer = client.get(f"/1.1/{USERNAME}/storage/bookmarks?newer={seen['last_sync']:.2f}",
                       headers=headers).json
    assert newer == ["bm-late"]
    tab = server.app.storage.export_records(
        server.app.auth.get_user(USERNAME).user_id, "tabs")[0]
    assert tab.expires == int(seen["info"]["tabs"] + 3600)
    client.get(f"/1.1/{USERNAME}/info/collections", headers=basic_auth(USERNAME, "wrong"),
               status=401)
    server.close()

    # Idempotent: a second run adds and changes nothing.
    code, out, _ = run_admin("-c", ini, "migrate", "--from", "weave-minimal", str(data_dir))
    assert code == 0 and "accounts created: 0" in out
    server = Server(new_url)
    assert by_id(server.client.get(f"/1.1/{USERNAME}/storage/bookmarks?full=1",
                                   headers=headers).json) == by_id(full)
    server.close()


def test_a_missing_data_directory_is_one_sentence(tmp_path):
    ini = write_ini(tmp_path / "new.ini", f"sqlite:///{tmp_path / 'new.db'}")
    code, _, err = run_admin("-c", ini, "migrate", "--from", "weave-minimal",
                             str(tmp_path / "nowhere"))
    assert code == 1 and "is not a directory" in err
