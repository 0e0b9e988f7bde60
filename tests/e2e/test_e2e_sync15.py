"""Storage API 1.5 end to end: ``paster serve``, real Hawk-signed HTTP, and a real proxy.

The server is development.ini's (waitress) with a master secret of the
test's and ``global.trusted_proxies = 127.0.0.1``. Tokens are minted for the
URL the client reaches: the server itself, or the public URL a forwarding
proxy (:mod:`tests.e2e.proxy`) presents with another Host, scheme and path
prefix. The same proxy connecting from 127.0.0.2, which is not trusted, has
its forwarded headers ignored, so the client's signature cannot match.
"""

import time

import pytest

from syncserver.testing.sync15_client import hawk_header
from tests.e2e.conftest import Client, new_account, running_server
from tests.e2e.proxy import ForwardingProxy
from tests.e2e.sync15 import Sync15Client, first_sync15, ok

pytestmark = pytest.mark.e2e

SECRET = "e2e-master-secret-" + "x" * 20
PUBLIC = "https://sync.example.test"


@pytest.fixture(scope="module")
def server15(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("e2e-sync15"), {
            "global.master_secret": f"{SECRET} an-older-secret",
            "global.trusted_proxies": "127.0.0.1"}) as running:
        yield running


@pytest.fixture(scope="module")
def proxies(server15):
    trusted = ForwardingProxy(server15.port, prefix="/storage-node").start()
    untrusted = ForwardingProxy(server15.port, prefix="/storage-node",
                                source_address="127.0.0.2").start()
    yield trusted, untrusted
    trusted.stop()
    untrusted.stop()


def test_a_first_sync_through_paster_serve(server15):
    client = Sync15Client(server15.url, 101, SECRET)
    first_sync15(client)
    client.close()


def test_tokens_for_another_node_or_secret_are_401(server15):
    for node, secret in ((server15.url + "/sync", SECRET), ("http://127.0.0.1:1", SECRET),
                         (f"http://localhost:{server15.port}", SECRET),
                         (server15.url, "not-the-servers-secret")):
        client = Sync15Client(server15.url, 102, secret, token_node=node)
        answer = client.get("info/collections")
        assert (answer.status, answer.body) == (401, b"0"), (node, answer)
        client.close()
    # A token signed by the second secret still verifies.
    assert ok(Sync15Client(server15.url, 102, "an-older-secret").get("info/collections"))


def test_a_first_sync_behind_a_trusted_proxy_with_another_host_scheme_and_prefix(proxies):
    trusted, _ = proxies
    client = Sync15Client(PUBLIC + "/storage-node", 103, SECRET,
                          connect=trusted.url + "/storage-node",
                          headers={"Host": "sync.example.test"})
    first_sync15(client, batch_sizes=(60, 60), page=50)
    client.close()


def test_the_backend_url_is_not_the_node_behind_the_proxy(proxies, server15):
    trusted, _ = proxies
    client = Sync15Client(server15.url + "/storage-node", 104, SECRET,
                          connect=trusted.url + "/storage-node",
                          headers={"Host": f"127.0.0.1:{server15.port}"})
    # The proxy says https: the client that signed for http reached another URL.
    assert client.get("info/collections").status == 401


def test_forwarded_headers_from_an_untrusted_address_are_ignored(proxies, server15):
    _, untrusted = proxies
    public = Sync15Client(PUBLIC + "/storage-node", 105, SECRET,
                          connect=untrusted.url + "/storage-node",
                          headers={"Host": "sync.example.test"})
    answer = public.get("info/collections")
    assert (answer.status, answer.body) == (401, b"0"), answer
    answer = public.put("storage/tabs/t1", {"payload": "x"})
    assert answer.status == 401, answer
    # Not honoured means: the server is what the connection says it is (no prefix, http).
    check = Sync15Client(server15.url, 105, SECRET)
    assert ok(check.get("info/collections")).json() == {}
    check.close()
    public.close()



def test_sync11_node_urls_follow_the_trusted_proxy_too(proxies):
    """The proxy's headers reach the application under paster serve (waitress kept them)."""
    trusted, untrusted = proxies
    email, username, password = new_account("proxy")
    for proxy, expected in ((trusted, "https://sync.example.test/storage-node/"),
                            (untrusted, f"http://127.0.0.1:{trusted.backend_port}/")):
        client = Client(proxy.url + "/storage-node/")
        host = {"Host": "sync.example.test"}
        if proxy is trusted:
            answer = client.put(f"user/1.0/{username}", {"password": password, "email": email},
                                headers=host)
            assert answer.status == 200, answer
        answer = client.get(f"user/1.0/{username}/node/weave", headers=host)
        assert (answer.status, answer.text) == (200, expected)
        client.close()


def test_a_replayed_or_stale_request_is_401_over_http(server15):
    client = Sync15Client(server15.url, 106, SECRET)
    url = f"{server15.url}/1.5/106/info/collections"
    signed = hawk_header("GET", url, client.credentials)
    first = client.get("info/collections", headers={"Authorization": signed})
    assert first.status == 200, first
    replayed = client.get("info/collections", headers={"Authorization": signed})
    assert (replayed.status, replayed.body) == (401, b"0"), replayed
    stale = client.get("info/collections", headers={
        "Authorization": hawk_header("GET", url, client.credentials, ts_offset=-3600)})
    assert stale.status == 401, stale
    challenge = stale.headers["WWW-Authenticate"]
    assert 'error="Stale timestamp"' in challenge and "tsm=" in challenge
    server_ts = int(challenge.split('ts="')[1].split('"')[0])
    assert abs(server_ts - time.time()) < 60
    client.close()
