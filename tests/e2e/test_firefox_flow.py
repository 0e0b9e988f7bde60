"""Current Firefox's whole flow (tests/e2e/firefox_flow.py) against real deployments.

(a) ``paster serve`` of development.ini on SQLite; (c) a tokenserver
process and two storage-node processes sharing ``global.master_secret``,
each node with a database of its own (MariaDB and PostgreSQL), the
tokenserver's node list naming both. Sign-in goes through the local fake
Mozilla accounts server; nodes are managed with ``syncserver-admin node``,
as an operator would. (b), Apache mod_wsgi with the application mounted
under ``/sync/``, is tests/deploy/test_apache_firefox_flow.py.

In (a) and (b) a single process is every node: the node list holds the
server twice, by two names that reach it (``127.0.0.1`` and ``localhost``),
so taking the first out of service moves the account to the second, with a
new uid and empty storage, on the same process.
"""

import concurrent.futures
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy

from tests.e2e.conftest import RunningServer, free_port, running_server, write_ini
from tests.e2e.firefox_flow import run_flow
from tests.fxa_server import FakeAccountsServer

pytestmark = pytest.mark.e2e

MASTER_SECRET = "firefox-flow-master-secret-0123456789abcdef"
#: The storage nodes' limits in (c).
NODE_LIMITS = {"storage.max_post_records": "200", "storage.max_post_bytes": "49152",
               "storage.max_total_records": "8000", "storage.max_total_bytes": "3000000"}
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
    """``{url: [capacity, load, available, downed, backoff]}`` from ``syncserver-admin node
    list``."""
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
        assert nodes_listed(server.ini) == {first: ["100", "0", "yes", "yes", "0"],
                                            second: ["100", "1", "yes", "no", "0"]}


@pytest.fixture
def cluster(tmp_path, fxa, mysql_url, postgresql_url):
    """A tokenserver process and two storage-node processes (paster serve each).

    The shapes of docs/deploying.rst: the tokenserver (SQLite: its users and
    the node list) serves no storage and no Sync 1.1;
    each node serves Sync 1.5 storage from a database of its own (node 1 on
    MariaDB, node 2 on PostgreSQL), verifies tokens with the shared master
    secret, and reads its own flags from the tokenserver's node list
    (``nodes.this_node``), so a downed node answers 503.
    """
    token_db = f"sqlite:///{tmp_path / 'tokenserver.db'}"
    roles = {"tokenserver": (token_db, {**tokenserver_settings(fxa),
                                        "storage15.enabled": "false",
                                        "sync11.enabled": "false"}),
             "node1": (mysql_url, {}), "node2": (postgresql_url, {})}
    servers = {}
    try:
        for name, (sqluri, overrides) in roles.items():
            directory = tmp_path / name
            directory.mkdir()
            port = free_port()
            if name != "tokenserver":
                overrides = {"tokenserver.enabled": "false", "storage15.enabled": "true",
                             "sync11.enabled": "false",
                             # Tighter limits than (a)'s: requests and batches closed by
                             # their byte limits too (~615-byte payloads).
                             **NODE_LIMITS,
                             "global.master_secret": MASTER_SECRET,
                             "nodes.this_node": f"http://127.0.0.1:{port}/",
                             "nodes.sqluri": token_db, "nodes.cache_seconds": "1"}
            # ConfigParser would take "%" in a URL (PostgreSQL's options) for interpolation.
            overrides = {key: value.replace("%", "%%") for key, value in overrides.items()}
            ini = write_ini(directory, port, overrides, sqluri=sqluri.replace("%", "%%"))
            servers[name] = RunningServer(ini, directory, port)
            servers[name].sqluri = sqluri
        # Started together: each start is mostly waiting for the process to import.
        with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
            for started in [pool.submit(server.start) for server in servers.values()]:
                started.result()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.mysql
@pytest.mark.postgresql
def test_a_tokenserver_with_two_storage_nodes(cluster, fxa):
    tokenserver, node1, node2 = cluster["tokenserver"], cluster["node1"], cluster["node2"]
    for node in (node1, node2):
        admin(tokenserver.ini, "node", "add", f"{node.url}/", "--capacity", "100")
    # The tokenserver is no storage node: its own /1.5/ paths are not served.
    assert urlopen_status(f"{tokenserver.url}/1.5/1/info/collections") == 404

    def take_node_out(node_url):
        assert node_url == f"{node1.url}/"
        admin(tokenserver.ini, "node", "set", node_url, "--downed")

    def check_old_node(device, old_token):
        # The downed node refuses its users (503, come back later) within nodes.cache_seconds.
        deadline = time.monotonic() + 10
        while True:
            answer = device.storage("GET", "info/collections")
            if answer.status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert answer.status == 503, answer
        assert answer.header("Retry-After") and answer.header("X-Weave-Backoff")

    report = run_flow(f"{tokenserver.url}/1.0/sync/1.5", fxa, take_node_out,
                      check_old_node=check_old_node)
    assert report.nodes == [node1.url, node1.url, node2.url]
    # The byte limits closed requests and batches before the record limits would have.
    assert report.batches["history"] > 20_000 // 8_000 + 1
    assert report.posts > 25_000 // 200 + report.batches["history"] + report.batches["bookmarks"]
    uid1, uid2, uid3 = report.uids
    # The move counted: node 1 (downed) lost the account, node 2 has it.
    assert nodes_listed(tokenserver.ini) == {f"{node1.url}/": ["100", "0", "yes", "yes", "0"],
                                             f"{node2.url}/": ["100", "1", "yes", "no", "0"]}
    # Each node keeps its records in its own database: node 1 the two uids from before
    # the move (the old one is purged later), node 2 only the new uid's.
    # (a Sync 1.5 uid's records are storage user -uid: syncserver.storage.sync15_user_id)
    # uid 1: the first upload, 210 incremental history records, 2 clients, meta and keys.
    assert records_by_uid(node1.sqluri) == {-uid1: 25_000 + 210 + 2 + 2, -uid2: 5_000 + 2}
    assert records_by_uid(node2.sqluri) == {-uid3: 25_000 + 2}
    assert records_by_uid(tokenserver.sqluri) == {}


def records_by_uid(url):
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(sqlalchemy.text(
                "SELECT userid, COUNT(*) FROM items GROUP BY userid")).all())
    finally:
        engine.dispose()


def urlopen_status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
