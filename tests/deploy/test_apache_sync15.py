"""Storage API 1.5 under Apache + mod_wsgi (daemon mode, production.ini, Redis in front).

The app is mounted at ``/sync`` (``WSGIScriptAlias``): a token's node is
``http://127.0.0.1:<port>/sync`` and the client signs the path with that
prefix. production.ini trusts proxies on 127.0.0.1, so the test itself can
act as a proxy that terminates TLS for ``sync.example.test``; the same
headers relayed from 127.0.0.2 are not believed.
"""

import pytest

from tests.e2e.proxy import ForwardingProxy
from tests.e2e.sync15 import Sync15Client, first_sync15, ok

pytestmark = pytest.mark.deploy

#: What the ``apache`` fixture exports as SYNCSERVER_MASTER_SECRET.
SECRET = "apache-master-secret"


def test_a_first_sync_under_the_sync_prefix(apache):
    client = Sync15Client(apache.url + "/sync", 201, SECRET)
    first_sync15(client)
    client.close()


def test_the_node_must_name_the_prefix_the_client_used(apache):
    at_root = Sync15Client(apache.url + "/sync", 202, SECRET, token_node=apache.url)
    answer = at_root.get("info/collections")
    assert (answer.status, answer.body) == (401, b"0"), answer
    # The same app at the root is another node: the root's token works there.
    assert ok(Sync15Client(apache.url, 202, SECRET).get("info/collections")).json() == {}


def test_behind_a_trusted_proxy_with_another_host_and_scheme(apache):
    forwarded = {"X-Forwarded-Host": "sync.example.test", "X-Forwarded-Proto": "https"}
    client = Sync15Client("https://sync.example.test/sync", 203, SECRET,
                          connect=apache.url + "/sync", headers=forwarded)
    first_sync15(client, batch_sizes=(50, 50), page=40)
    client.close()


@pytest.mark.parametrize(("source", "status"), [("127.0.0.1", 200), ("127.0.0.2", 401)])
def test_a_proxy_with_a_prefix_of_its_own_is_believed_only_from_a_trusted_address(
        apache, source, status):
    """The proxy strips /edge and says so (X-Forwarded-Prefix); Apache adds /sync."""
    proxy = ForwardingProxy(apache.port, prefix="/edge", source_address=source).start()
    try:
        client = Sync15Client("https://sync.example.test/edge/sync", 204, SECRET,
                              connect=proxy.url + "/edge/sync",
                              headers={"Host": "sync.example.test"})
        answer = client.get("info/collections")
        assert answer.status == status, answer
        if status == 401:
            assert answer.body == b"0"
        client.close()
    finally:
        proxy.stop()
