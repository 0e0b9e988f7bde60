"""A pending reset key dies with the password it was issued against (issue 12, item 3).

Two gunicorn processes share one database and the session's real SMTP
server: the key is mailed by one process, the password changes through the
other (or through ``syncserver-admin``, a third process), and the first
must then refuse the key. Nothing in-process can make this pass: the key is
voided in the database, where every process looks.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.controllers.test_password_reset_api import LINK_RE
from tests.e2e.conftest import Client, new_account, write_ini
from tests.services import GunicornServer

ADMIN = Path(sys.executable).parent / "syncserver-admin"
NEW_PASSWORD = "the owner's new password"
ATTACKER_PASSWORD = "the attacker's password"


@pytest.fixture(params=[
    "sqlite_url", pytest.param("mysql_url", marks=pytest.mark.mysql)])
def two_servers(request, tmp_path, smtp_server):
    sqluri = request.getfixturevalue(request.param).replace("%", "%%")
    settings = {"smtp.host": "127.0.0.1", "smtp.port": str(smtp_server.port),
                "smtp.sender": "sync@example.org",
                "global.public_url": "https://sync.example.org/",
                "throttle.reset_mail_interval_seconds": "0"}
    ini = write_ini(tmp_path, 0, settings, sqluri=sqluri)
    servers = []
    try:
        for n in range(2):
            directory = tmp_path / f"server{n}"
            directory.mkdir()
            servers.append(GunicornServer(ini, directory, threads=2).start())
        yield ini, servers
    finally:
        for server in servers:
            server.stop()


def register(url):
    email, username, password = new_account("reset")
    client = Client(url)
    assert client.put(f"/user/1.0/{username}",
                      {"email": email, "password": password}).status == 200
    client.close()
    return email, username, password


def mail_key(url, smtp_server, email, username):
    client = Client(url)
    response = client.get(f"/user/1.0/{username}/password_reset")
    client.close()
    assert (response.status, response.text) == (200, "success"), response
    mails = [mail for mail in smtp_server.mails() if mail["To"] == email]
    link = LINK_RE.search(mails[-1].get_content()).group(1)
    return link.rsplit("key=", 1)[1]


def redeem(url, username, key):
    client = Client(url)
    response = client.post(f"/user/1.0/{username}/password", ATTACKER_PASSWORD.encode(),
                           headers={"X-Weave-Password-Reset": key}, content_type="text/plain")
    client.close()
    return response


def can_log_in(url, username, password):
    client = Client(f"{url}/1.1/{username}/", username, password)
    status = client.get("info/collections").status
    client.close()
    return status == 200


def test_a_password_change_on_one_worker_voids_the_key_on_the_other(two_servers, smtp_server):
    _, (first, second) = two_servers
    email, username, password = register(first.url)
    key = mail_key(first.url, smtp_server, email, username)
    client = Client(second.url, username, password)
    changed = client.post(f"/user/1.0/{username}/password", NEW_PASSWORD.encode(),
                          content_type="text/plain")
    client.close()
    assert (changed.status, changed.text) == (200, "success"), changed
    refused = redeem(first.url, username, key)
    assert (refused.status, refused.json()) == (400, 10), refused
    assert can_log_in(first.url, username, NEW_PASSWORD)
    assert not can_log_in(second.url, username, ATTACKER_PASSWORD)


def test_an_e_mail_change_voids_the_key_mailed_to_the_old_address(two_servers, smtp_server):
    _, (first, second) = two_servers
    email, username, password = register(first.url)
    key = mail_key(first.url, smtp_server, email, username)
    client = Client(second.url, username, password)
    assert client.post(f"/user/1.0/{username}/email", b"new@example.org",
                       content_type="text/plain").status == 200
    client.close()
    assert redeem(first.url, username, key).status == 400
    assert can_log_in(second.url, username, password)


@pytest.mark.parametrize("command", [
    ["user", "set-password", "--password-stdin"],
    ["user", "disable"],
])
def test_syncserver_admin_voids_the_key_too(two_servers, smtp_server, command):
    ini, (first, second) = two_servers
    email, username, _ = register(first.url)
    key = mail_key(second.url, smtp_server, email, username)
    result = subprocess.run(
        [str(ADMIN), "-c", str(ini), command[0], command[1], email, *command[2:]],
        input=NEW_PASSWORD + "\n", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if command[1] == "disable":
        enable = subprocess.run([str(ADMIN), "-c", str(ini), "user", "enable", email],
                                capture_output=True, text=True, timeout=120)
        assert enable.returncode == 0, enable.stderr
    else:
        assert "reset link" in result.stdout
    assert redeem(first.url, username, key).status == 400
    assert not can_log_in(first.url, username, ATTACKER_PASSWORD)


def test_an_untouched_key_still_works_across_workers(two_servers, smtp_server):
    """The control: without a change in between, the key mailed by one works on the other."""
    _, (first, second) = two_servers
    email, username, _ = register(first.url)
    key = mail_key(first.url, smtp_server, email, username)
    assert redeem(second.url, username, key).status == 200
    assert can_log_in(first.url, username, ATTACKER_PASSWORD)
