"""Current Firefox's whole flow (tests/e2e/firefox_flow.py) against three real deployments.

(a) ``paster serve`` of development.ini on SQLite; (b) Apache mod_wsgi with
the application mounted under ``/sync/`` on SQLite; (c) a tokenserver
process and two storage-node processes sharing ``global.master_secret``,
each node with a database of its own (MariaDB and PostgreSQL), the
tokenserver's node list naming both. Sign-in goes through the local fake
Mozilla accounts server; nodes are managed with ``syncserver-admin node``,
as an operator would.

In (a) and (b) a single process is every node: the node list holds the
server twice, by two names that reach it (``127.0.0.1`` and ``localhost``),
so taking the first out of service moves the account to the second, with a
new uid and empty storage, on the same process.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.deploy.conftest import APACHE_USER, ApacheServer
from tests.e2e.conftest import (
    DEVELOPMENT_INI,
    RunningServer,
    free_port,
    running_server,
    write_ini,
)
from tests.e2e.firefox_flow import run_flow
from tests.fxa_server import FakeAccountsServer

MASTER_SECRET = "firefox-flow-master-secret-0123456789abcdef"
ADMIN = Path(sys.executable).parent / "syncserver-admin"


@pytest.fixture(scope="module")
def fxa():
    server = FakeAccountsServer().start()
    yield server
    server.stop()


def tokenserver_settings(fxa):
    return {"tokenserver.enabled": "true", "tokenserver.oauth_server_url": fxa.url,
            "global.master_secret": MASTER_SECRET}


def admin(ini, *args, command=(str(ADMIN),)):
    """``syncserver-admin -c <ini> ...``; fails the test with its output when it fails."""
    result = subprocess.run([*command, "-c", str(ini), *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"syncserver-admin {' '.join(args)}: {result.stdout}" \
                                   f"{result.stderr}"
    return result.stdout


def nodes_listed(ini, command=(str(ADMIN),)):
    """``{url: (load, downed)}`` from ``syncserver-admin node list``."""
    listed = {}
    for line in admin(ini, "node", "list", command=command).splitlines():
        fields = line.split()
        if fields and fields[0].startswith("http"):
            listed[fields[0]] = fields[1:]
    return listed


def test_paster_serve(tmp_path, fxa):
    with running_server(tmp_path, tokenserver_settings(fxa)) as server:
        first, second = f"{server.url}/", f"http://localhost:{server.port}/"
        admin(server.ini, "node", "add", first, "--capacity", "100")

        def take_node_out(node_url):
            assert node_url == first
            admin(server.ini, "node", "add", second, "--capacity", "100")
            admin(server.ini, "node", "set", first, "--downed")

        report = run_flow(f"{server.url}/1.0/sync/1.5", fxa, take_node_out)
        assert report.nodes == [server.url, server.url, f"http://localhost:{server.port}"]
        print(report)
