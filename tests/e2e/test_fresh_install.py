"""The README's base install, for real: a fresh virtualenv with ``pip install -e .`` only.

No extras, so no MySQL or PostgreSQL driver, no Redis, no LDAP: what a
newcomer has after the README's first command (issue 12, items 10 and 12).
The virtualenv is built once per test session (it takes most of a minute);
everything runs through its own ``paster`` and ``syncserver-admin``.
"""

import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.e2e.conftest import DEVELOPMENT_INI, PROJECT_ROOT, Client, free_port, new_account
from tests.fxa_server import FakeAccountsServer

pytestmark = pytest.mark.e2e

README = PROJECT_ROOT / "README.md"


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory):
    """``python -m venv`` + ``pip install -e <checkout>``: the bin folder of the result."""
    venv = tmp_path_factory.mktemp("bare-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-e", str(PROJECT_ROOT)],
        capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        pytest.fail(f"pip install -e . failed in a fresh virtualenv:\n{installed.stderr[-3000:]}")
    bin_folder = venv / "bin"
    for module in ("MySQLdb", "psycopg", "redis", "ldap"):
        probe = subprocess.run([str(bin_folder / "python"), "-c", f"import {module}"],
                               capture_output=True, timeout=60)
        assert probe.returncode != 0, f"{module} is installed in the base install"
    return bin_folder


def readme_ini_example():
    """The README's "write your own ini" block, exactly as written."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```ini\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "the README should have one ini example"
    return blocks[0]


def serve(bin_folder, ini, port):
    """Start the venv's ``paster serve <ini> port=<port>``; wait for the heartbeat."""
    log = open(ini.parent / "paster.log", "wb")  # noqa: SIM115 (kept by Popen)
    process = subprocess.Popen([str(bin_folder / "paster"), "serve", str(ini), f"port={port}"],
                               cwd=ini.parent, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/__heartbeat__",
                                        timeout=1) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    stop(process)
    pytest.fail(f"paster serve did not answer:\n{(ini.parent / 'paster.log').read_text()}")


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def admin(bin_folder, ini, *args):
    return subprocess.run([str(bin_folder / "syncserver-admin"), "-c", str(ini), *args],
                          capture_output=True, text=True, timeout=120, cwd=ini.parent)


def test_the_readme_own_ini_runs_as_written(bare_venv, tmp_path):
    example = readme_ini_example()
    assert "/path/to/syncserver/" in example
    ini = tmp_path / "my.ini"
    ini.write_text(example.replace("/path/to/syncserver", str(PROJECT_ROOT)), encoding="utf-8")
    port = free_port()
    process = serve(bare_venv, ini, port)
    try:
        email, username, password = new_account("readme")
        client = Client(f"http://127.0.0.1:{port}/")
        assert client.put(f"user/1.0/{username}",
                          {"email": email, "password": password}).status == 200
        client.close()
        storage = Client(f"http://127.0.0.1:{port}/1.1/{username}/", username, password)
        assert storage.put("storage/prefs/p", {"payload": "x"}).status == 200
        storage.close()
    finally:
        stop(process)
    log = (tmp_path / "paster.log").read_text()
    assert f"Serving on http://127.0.0.1:{port}" in log, log
    assert "Traceback" not in log
    # The example moved the records *and* the accounts into its own database.
    with sqlite3.connect(tmp_path / "my-data" / "syncserver.db") as database:
        assert database.execute("SELECT COUNT(*) FROM users WHERE username = ?",
                                (username,)).fetchone() == (1,)
        assert database.execute("SELECT COUNT(*) FROM items").fetchone() == (1,)
    shared = PROJECT_ROOT / "var" / "syncserver.db"
    if shared.exists():
        with sqlite3.connect(shared) as database:
            tables = {row[0] for row in database.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "users" in tables:
                assert database.execute("SELECT COUNT(*) FROM users WHERE username = ?",
                                        (username,)).fetchone() == (0,)


def test_admin_check_passes_on_the_base_install(bare_venv, tmp_path):
    """development.ini as shipped, with the accounts server a local fake (tests never reach Mozilla)."""
    shutil.copy(DEVELOPMENT_INI, tmp_path / "development.ini")
    ini = tmp_path / "with-local-accounts.ini"
    accounts = FakeAccountsServer().start()
    try:
        ini.write_text("[app:main]\nuse = config:development.ini\n"
                       f"tokenserver.oauth_server_url = {accounts.url}\n"
                       "\n[server:main]\nuse = config:development.ini\n")
        upgraded = admin(bare_venv, ini, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        checked = admin(bare_venv, ini, "check")
    finally:
        accounts.stop()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No module" not in checked.stdout + checked.stderr
    assert [line.split()[1] for line in checked.stdout.splitlines()] == [
        "configuration", "storage", "auth", "schema", "throttle", "tokenserver", "accounts_server"]
    assert f"1 RSA signing key(s) at {accounts.url}/jwks" in checked.stdout


def test_admin_check_fails_when_the_accounts_server_cannot_be_reached(bare_venv, tmp_path):
    shutil.copy(DEVELOPMENT_INI, tmp_path / "development.ini")
    ini = tmp_path / "unreachable-accounts.ini"
    nowhere = FakeAccountsServer()  # never started: nothing listens on its port
    ini.write_text("[app:main]\nuse = config:development.ini\n"
                   f"tokenserver.oauth_server_url = {nowhere.url}\n"
                   "\n[server:main]\nuse = config:development.ini\n")
    assert admin(bare_venv, ini, "db", "upgrade").returncode == 0
    checked = admin(bare_venv, ini, "check")
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[-1].startswith("FAIL  accounts_server"), checked.stdout
    assert "check failed: accounts_server" in checked.stderr


@pytest.mark.parametrize("settings, extra", [
    ({"storage.sqluri": "mysql+mysqldb://sync:pw@127.0.0.1/sync"}, "mysql"),
    ({"storage.sqluri": "postgresql+psycopg://sync@127.0.0.1/sync"}, "postgresql"),
    ({"storage.backend": "redis", "storage.wrapped_backend": "sql",
      "storage.redis_url": "redis://127.0.0.1:6379/0"}, "redis"),
    ({"throttle.redis_url": "redis://127.0.0.1:6379/0"}, "redis"),
    ({"auth.redis_url": "redis://127.0.0.1:6379/0"}, "redis"),
    ({"auth.backend": "ldap", "auth.ldapuri": "ldap://127.0.0.1",
      "auth.users_base_dn": "ou=people,dc=example,dc=org"}, "ldap"),
])
def test_a_missing_driver_names_the_extra_to_install(bare_venv, tmp_path, settings, extra):
    shutil.copy(DEVELOPMENT_INI, tmp_path / "development.ini")
    ini = tmp_path / "my.ini"
    ini.write_text("[app:main]\nuse = config:development.ini\n"
                   + "".join(f"{key} = {value}\n" for key, value in settings.items())
                   + "\n[server:main]\nuse = config:development.ini\n")
    hint = f"pip install 'syncserver[{extra}]'"
    checked = admin(bare_venv, ini, "check")
    assert checked.returncode == 1
    assert checked.stdout.startswith("FAIL  configuration") and hint in checked.stdout, checked
    started = subprocess.run([str(bare_venv / "paster"), "serve", str(ini), f"port={free_port()}"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path,
                             stdin=subprocess.DEVNULL)
    assert started.returncode == 1, started
    assert hint in started.stderr and "Traceback" not in started.stderr, started.stderr
