"""Deployment shapes, for real: a tokenserver-only process and two storage-node-only processes.

Three ``paster serve`` processes share ``global.master_secret`` and nothing
else: the tokenserver (``sync11.enabled = false``, ``storage15.enabled =
false``) has only its own database (users and node list) and no storage
database; each storage node (``sync11.enabled = false``,
``tokenserver.enabled = false``) has only its own storage database, no
tokenserver database and no accounts server. The node list names both
nodes (``syncserver-admin node add``). Access tokens come from the local
fake accounts server. The last tests build apps in-process for the checks
that need no network.
"""

import json
import urllib.error
import urllib.request

import pytest
import webtest

from syncserver.app import build_app
from syncserver.errors import ConfigError
from syncserver.testing.sync15_client import Credentials, hawk_header
from tests.admin.conftest import run_admin
from tests.e2e.conftest import DEVELOPMENT_INI, RunningServer
from tests.fxa_server import FakeAccountsServer
from tests.services import free_port
from tests.tokenserver.token_client import SECRET, client_state, fxa_uid, key_id

pytestmark = pytest.mark.deploy


def write_shape_ini(directory, name, port, keys):
    """``<name>.ini``: ``keys`` alone in ``[app:main]`` (nothing inherited), waitress on ``port``."""
    lines = ["[app:main]", "use = egg:syncserver"] + [
        f"{key} = {value}" for key, value in keys.items()]
    lines += ["", "[server:main]", f"use = config:{DEVELOPMENT_INI}", f"port = {port}"]
    path = directory / f"{name}.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Deployment:
    """The three processes, their inis and the fake accounts server."""

    def __init__(self, directory, fxa):
        self.directory = directory
        self.fxa = fxa
        self.servers = []
        ports = [free_port() for _ in range(3)]
        self.token_ini = write_shape_ini(directory, "tokenserver", ports[0], {
            "sync11.enabled": "false", "storage15.enabled": "false",
            "tokenserver.enabled": "true",
            "tokenserver.sqluri": f"sqlite:///{directory / 'tokens.db'}",
            "tokenserver.create_tables": "true",
            "tokenserver.oauth_server_url": fxa.url, "tokenserver.oauth_timeout": "2",
            "tokenserver.replaced_grace_seconds": "0",
            "global.master_secret": SECRET})
        self.node_inis = [write_shape_ini(directory, f"node-{name}", port, {
            "sync11.enabled": "false", "storage15.enabled": "true",
            "tokenserver.enabled": "false",
            "storage.sqluri": f"sqlite:///{directory / f'storage-{name}.db'}",
            "storage.create_tables": "true",
            "global.master_secret": SECRET}) for name, port in zip("ab", ports[1:], strict=True)]
        self.tokenserver = RunningServer(self.token_ini, directory / "tokenserver", ports[0])
        self.nodes = [RunningServer(ini, directory / ini.stem, port)
                      for ini, port in zip(self.node_inis, ports[1:], strict=True)]

    def start(self):
        for server in [self.tokenserver, *self.nodes]:
            server.directory.mkdir(exist_ok=True)
            server.start()
            self.servers.append(server)
        for node in self.nodes:
            result = run_admin(self.token_ini, "node", "add", node.url + "/", "--capacity", "100")
            assert result.code == 0, result

    def stop(self):
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    fxa = FakeAccountsServer().start()
    running = Deployment(tmp_path_factory.mktemp("shapes"), fxa)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        fxa.stop()


def http(method, url, headers=None, body=None):
    """``(status, headers, parsed JSON or text)`` of one request."""
    request = urllib.request.Request(url, method=method, headers=headers or {},
                                     data=body.encode("utf-8") if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, answer_headers, raw = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, answer_headers, json.loads(text)
    except ValueError:
        return status, answer_headers, text


class Token:
    """A token response: the uid, its node's base URL and the Hawk credentials."""

    def __init__(self, body):
        self.uid = body["uid"]
        self.endpoint = body["api_endpoint"]
        self.node = self.endpoint.rsplit("/1.5/", 1)[0]
        self.credentials = Credentials(body["id"], body["key"])

    def request(self, method, path, body=None, node=None):
        """``method <node>/1.5/<uid><path>`` signed with this token (``node``: another host)."""
        url = f"{node or self.node}/1.5/{self.uid}{path}"
        headers = {"Authorization": hawk_header(method, url, self.credentials)}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        return http(method, url, headers, body)


def get_token(deployment, account, version=1):
    stamp = 1_000 * version
    access_token = deployment.fxa.mint({"sub": account, "fxa-generation": stamp})
    status, _, body = http("GET", deployment.tokenserver.url + "/1.0/sync/1.5", {
        "Authorization": f"Bearer {access_token}",
        "X-KeyID": key_id(stamp, client_state(version))})
    assert status == 200, body
    return Token(body)


def node_urls(deployment):
    return [node.url for node in deployment.nodes]


def test_each_process_reports_and_checks_its_own_shape(deployment):
    status, _, report = http("GET", deployment.tokenserver.url + "/__heartbeat__")
    assert status == 200 and report["serves"] == ["tokenserver"]
    assert set(report["checks"]) == {"tokenserver"}
    for node in deployment.nodes:
        status, _, report = http("GET", node.url + "/__heartbeat__")
        assert status == 200 and report["serves"] == ["storage15"]
        assert set(report["checks"]) == {"storage"}

    result = run_admin(deployment.token_ini, "check")
    assert result.code == 0, result
    names = [line.split()[1] for line in result.out.splitlines()]
    assert names == ["configuration", "schema", "tokenserver", "accounts_server"]
    assert "serves tokenserver" in result.out
    result = run_admin(deployment.node_inis[0], "check")
    assert result.code == 0, result
    assert [line.split()[1] for line in result.out.splitlines()] == [
        "configuration", "storage", "schema"]


def test_what_is_switched_off_answers_404(deployment):
    token_url, node_url = deployment.tokenserver.url, deployment.nodes[0].url
    for path in ("/1.5/1/info/collections", "/1.1/someone/info/collections",
                 "/user/1.0/someone", "/user/1.0/someone/node/weave", "/weave-password-reset"):
        assert http("GET", token_url + path)[0] == 404, path
    for path in ("/1.0/sync/1.5", "/token/1.0/sync/1.5", "/1.1/someone/info/collections",
                 "/user/1.0/someone", "/weave-delete-account", "/misc/1.0/captcha_html"):
        assert http("GET", node_url + path)[0] == 404, path


def test_accounts_are_spread_over_the_nodes_and_each_node_takes_only_its_tokens(deployment):
    tokens = [get_token(deployment, fxa_uid(f"shape-{number}")) for number in range(4)]
    nodes = node_urls(deployment)
    assert sorted(token.node for token in tokens) == sorted(nodes * 2)
    assert all(token.endpoint == f"{token.node}/1.5/{token.uid}" for token in tokens)

    for token in tokens:
        status, _, body = token.request("PUT", "/storage/bookmarks/item1",
                                        {"payload": f"on {token.node}"})
        assert status == 200, body
        status, _, record = token.request("GET", "/storage/bookmarks/item1")
        assert status == 200 and record["payload"] == f"on {token.node}"
        # The other node refuses a token minted for this one, signed for its own host.
        other = next(url for url in nodes if url != token.node)
        status, _, body = token.request("GET", "/info/collections", node=other)
        assert status == 401, body
        status, _, body = token.request("PUT", "/storage/bookmarks/item2", {"payload": "x"},
                                        node=other)
        assert status == 401, body

    # Each node kept only its own accounts' records, in its own database.
    for token in tokens:
        status, _, collections = token.request("GET", "/info/collections")
        assert status == 200 and set(collections) == {"bookmarks"}
    listed = run_admin(deployment.token_ini, "node", "list")
    assert listed.code == 0 and all(url in listed.out for url in nodes)


def test_purge_expired_on_the_tokenserver_deletes_replaced_uids_on_their_node(deployment):
    account = fxa_uid("shape-key-change")
    old = get_token(deployment, account, version=1)
    assert old.request("PUT", "/storage/tabs/mine", {"payload": "old keys"})[0] == 200
    new = get_token(deployment, account, version=2)
    assert new.uid != old.uid
    assert new.request("PUT", "/storage/tabs/mine", {"payload": "new keys"})[0] == 200

    result = run_admin(deployment.token_ini, "purge-expired", "--json")
    assert result.code == 0, result
    replaced = json.loads(result.out)["replaced_uids"]
    assert replaced["on_nodes"] >= 1 and replaced["failed"] == 0
    # The old uid's records are gone from its node; the new uid's are there.
    status, _, collections = old.request("GET", "/info/collections")
    assert status == 200 and collections == {}
    status, _, record = new.request("GET", "/storage/tabs/mine")
    assert status == 200 and record["payload"] == "new keys"
    # Nothing left to do: a second run deletes nothing more.
    again = json.loads(run_admin(deployment.token_ini, "purge-expired", "--json").out)
    assert again["replaced_uids"]["due"] == 0


# --- in-process: what needs no second process -----------------------------------------------


def test_a_tokenserver_without_storage_or_nodes_answers_503(tmp_path):
    fxa = FakeAccountsServer().start()
    try:
        app = build_app({
            "sync11.enabled": "false", "storage15.enabled": "false",
            "tokenserver.enabled": "true", "tokenserver.create_tables": "true",
            "tokenserver.sqluri": f"sqlite:///{tmp_path / 'tokens.db'}",
            "tokenserver.oauth_server_url": fxa.url, "global.master_secret": SECRET})
        try:
            assert app.storage is None and app.auth is None
            client = webtest.TestApp(app)
            answer = client.get("/1.0/sync/1.5", headers={
                "Authorization": f"Bearer {fxa.mint({'sub': fxa_uid('lonely')})}",
                "X-KeyID": key_id(1000, client_state(1))}, expect_errors=True)
            assert answer.status_int == 503 and answer.json["status"] == "internal-error"
            with app.components.token_users.engine.connect() as connection:
                assert connection.exec_driver_sql(
                    "SELECT COUNT(*) FROM token_users").scalar() == 0
        finally:
            app.close()
    finally:
        fxa.stop()


def test_a_process_must_serve_something():
    with pytest.raises(ConfigError, match="serve nothing"):
        build_app({"sync11.enabled": "false", "storage15.enabled": "false",
                   "tokenserver.enabled": "false", "storage.sqluri": "sqlite://"})
    with pytest.raises(ConfigError, match=r"nodes\.assignment"):
        build_app({"sync11.enabled": "false", "storage15.enabled": "true",
                   "nodes.assignment": "true", "storage.sqluri": "sqlite://",
                   "global.master_secret": SECRET})


def test_a_tokenserver_with_one_node_and_no_node_list(deployment, tmp_path):
    """``tokenserver.node_url`` names the one storage node: tokens and purges go there."""
    node = deployment.nodes[1]
    keys = {"sync11.enabled": "false", "storage15.enabled": "false",
            "tokenserver.enabled": "true", "tokenserver.create_tables": "true",
            "tokenserver.sqluri": f"sqlite:///{tmp_path / 'single.db'}",
            "tokenserver.oauth_server_url": deployment.fxa.url,
            "tokenserver.node_url": node.url, "tokenserver.replaced_grace_seconds": "0",
            "global.master_secret": SECRET}
    ini = write_shape_ini(tmp_path, "single", free_port(), keys)
    app = build_app(keys)
    try:
        client = webtest.TestApp(app)

        def token(version):
            stamp = 1_000 * version
            answer = client.get("/1.0/sync/1.5", headers={
                "Authorization": "Bearer " + deployment.fxa.mint(
                    {"sub": fxa_uid("single-node"), "fxa-generation": stamp}),
                "X-KeyID": key_id(stamp, client_state(version))})
            return Token(answer.json)

        old = token(1)
        assert old.node == node.url
        assert old.request("PUT", "/storage/prefs/p", {"payload": "old"})[0] == 200
        new = token(2)
        assert new.uid != old.uid and new.node == node.url
    finally:
        app.close()
    result = run_admin(ini, "purge-expired", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["replaced_uids"]["on_nodes"] == 1
    assert old.request("GET", "/info/collections")[2] == {}
