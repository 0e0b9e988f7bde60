"""Hawk behind real WSGI servers: the raw request-target each one hands over (waitress, gunicorn).

Signed requests with percent-encoded ids go over real HTTP to a small app
that runs :class:`~syncserver.web.hawk.HawkVerifier`, at the root and under
a mount prefix, so the ``REQUEST_URI`` / ``RAW_URI`` / ``SCRIPT_NAME``
handling is checked against what the servers really set.
"""

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncserver.testing.sync15_client import hawk_header, mint_token
from tests.conftest import service_missing
from tests.services import free_port, wait_for_port
from tests.web.hawk_app import make_app

SECRET = "server-test-secret"
REPO = Path(__file__).resolve().parents[2]
PATHS = [
    "/1.5/42/info/collections",
    "/1.5/42/storage/bookmarks/%7B2a5f9e4c-0000-4000-8000-0123456789ab%7D",
    "/1.5/42/storage/tabs/abc%3D%3D",
    "/1.5/42/storage/tabs/abc==",                 # as the Rust client leaves it
    "/1.5/42/storage/forms/with%20space",
    "/1.5/42/storage/history/tilde~id",
    "/1.5/42/storage/bookmarks?ids=%7Ba%7D%2C%7Bb%7D&batch=MTIz%3D&commit=true",
]


def send(port, node, path, prefix=""):
    """GET ``prefix + path`` signed for ``node + path``, exactly these bytes on the wire."""
    creds = mint_token(42, node, SECRET)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", prefix + path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", f"127.0.0.1:{port}")
        connection.putheader("Authorization", hawk_header("GET", node + path, creds))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(params=["", "/sync"], ids=["root", "url_prefix"])
def waitress_server(request):
    """waitress (in this process), serving at the root or under its ``url_prefix``."""
    from webtest.http import StopableWSGIServer

    port = free_port()
    node = f"http://127.0.0.1:{port}{request.param}"
    server = StopableWSGIServer.create(make_app(node, SECRET), host="127.0.0.1", port=port,
                                       url_prefix=request.param)
    assert wait_for_port(port)
    yield port, node, request.param
    server.shutdown()


@pytest.mark.parametrize("path", PATHS)
def test_waitress(waitress_server, path):
    port, node, prefix = waitress_server
    status, answer = send(port, node, path, prefix=prefix)
    assert (status, answer.get("uid")) == (200, 42), answer
    assert answer["target"] == prefix + path


@pytest.fixture(scope="module", params=["", "/sync"], ids=["root", "script_name"])
def gunicorn_server(request, tmp_path_factory):
    try:
        import gunicorn
    except ImportError as error:
        service_missing("gunicorn", error)
    # gunicorn >= 23 opens a control socket at one shared path by default: not ours.
    no_control_socket = (["--no-control-socket"]
                         if int(gunicorn.__version__.split(".")[0]) >= 23 else [])
    port = free_port()
    node = f"http://127.0.0.1:{port}{request.param}"
    env = dict(os.environ, HAWK_TEST_NODE=node, HAWK_TEST_SECRET=SECRET,
               PYTHONPATH=str(REPO))
    if request.param:
        env["SCRIPT_NAME"] = request.param
    log = tmp_path_factory.mktemp("gunicorn-hawk") / "gunicorn.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "tests.web.hawk_app:app",
             "--bind", f"127.0.0.1:{port}", "--workers", "1",
             *no_control_socket],
            cwd=REPO, env=env, stdout=output, stderr=output, stdin=subprocess.DEVNULL)
    try:
        if not wait_for_port(port, process=process):
            pytest.fail(f"gunicorn did not start: {log.read_text()[-2000:]}")
        yield port, node, request.param
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.parametrize("path", PATHS)
def test_gunicorn(gunicorn_server, path):
    port, node, prefix = gunicorn_server
    status, answer = send(port, node, path, prefix=prefix)
    assert (status, answer.get("uid")) == (200, 42), answer
    assert answer["target"] == prefix + path


def test_replay_over_http_is_refused(waitress_server):
    port, node, prefix = waitress_server
    creds = mint_token(42, node, SECRET)
    header = hawk_header("GET", node + PATHS[0], creds)
    answers = []
    for _ in range(2):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", prefix + PATHS[0], headers={"Authorization": header})
        response = connection.getresponse()
        answers.append((response.status, json.loads(response.read()).get("reason")))
        connection.close()
    assert answers == [(200, None), (401, "nonce already used")]
