"""Current Firefox's whole flow (tests/e2e/firefox_flow.py) under Apache mod_wsgi, at ``/sync/``.

development.ini's settings on SQLite, the tokenserver on and pointed at the
local fake Mozilla accounts server; the daemon runs as ``www-data``, and so
does ``syncserver-admin`` (the database is its file). Firefox's
``identity.sync.tokenserver.uri`` is ``http://<server>/sync/1.0/sync/1.5``,
and every ``api_endpoint`` it gets must keep the ``/sync`` prefix.

The node list holds the server twice (``127.0.0.1`` and ``localhost``):
taking the first out of service (``node remove`` here; ``--downed`` in the
paster test) moves the account to the second.
"""

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.deploy.conftest import APACHE_USER, PROJECT_ROOT, ApacheServer
from tests.e2e.firefox_flow import run_flow
from tests.e2e.test_firefox_flow import admin, nodes_listed, tokenserver_settings
from tests.fxa_server import FakeAccountsServer

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def fxa():
    server = FakeAccountsServer().start()
    yield server
    server.stop()


@pytest.fixture
def apache_development(apache_python_home, fxa):
    """Apache serving development.ini's setup (SQLite under the test's folder) at / and /sync."""
    directory = Path(tempfile.mkdtemp(prefix="syncserver-apache-flow-"))
    os.chmod(directory, 0o755)
    ini = directory / "syncserver.ini"
    settings = {"storage.sqluri": "sqlite:///%(here)s/var/sync.db",
                "auth.sqluri": "sqlite:///%(here)s/var/sync.db", **tokenserver_settings(fxa)}
    ini.write_text("\n".join(["[app:main]", f"use = config:{PROJECT_ROOT / 'development.ini'}",
                              *(f"{key} = {value}" for key, value in settings.items())]) + "\n")
    (directory / "var").mkdir()
    user = pwd.getpwnam(APACHE_USER)
    for path in (directory, directory / "var"):
        os.chown(path, user.pw_uid, user.pw_gid)
    server = ApacheServer(directory, apache_python_home, {"SYNCSERVER_INI": str(ini)})
    server.ini = ini
    server.admin_command = ("runuser", "-u", APACHE_USER, "--",
                            str(apache_python_home / "bin" / "syncserver-admin"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_firefox_flow_under_a_path_prefix(apache_development, fxa):
    server = apache_development
    command = server.admin_command
    first = f"{server.url}/sync/"
    second = f"http://localhost:{server.port}/sync/"
    admin(server.ini, "node", "add", first, "--capacity", "100", command=command)

    def take_node_out(node_url):
        assert node_url == first
        admin(server.ini, "node", "add", second, "--capacity", "100", command=command)
        admin(server.ini, "node", "remove", first, command=command)
        assert list(nodes_listed(server.ini, command=command)) == [second]

    report = run_flow(f"{server.url}/sync/1.0/sync/1.5", fxa, take_node_out)
    assert report.nodes == [f"{server.url}/sync", f"{server.url}/sync",
                            f"http://localhost:{server.port}/sync"]
    assert nodes_listed(server.ini, command=command) == {second: ["100", "1", "yes", "no", "0"]}
