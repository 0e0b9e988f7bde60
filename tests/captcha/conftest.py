"""A fake captcha provider: a real HTTP(S) server speaking the ``siteverify`` protocol.

It accepts ``GOOD_TOKEN`` under ``SECRET`` and refuses anything else, like
reCAPTCHA and hCaptcha do, and remembers each form it received. The HTTPS
variant uses a self-signed certificate for 127.0.0.1 made by ``openssl``.
"""

import http.server
import json
import shutil
import ssl
import subprocess
import threading
import urllib.parse

import pytest

from tests.controllers.conftest import app, make_test_app  # noqa: F401 (shared fixtures)
from tests.services import free_port

SECRET = "s3cret-key"
GOOD_TOKEN = "good-token"


class FakeProvider:
    def __init__(self, tls_context=None):
        self.forms = []
        self.status = 200
        self.raw_body = None
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("ascii")))
                provider.forms.append(form)
                if provider.raw_body is not None:
                    body = provider.raw_body
                else:
                    ok = form.get("secret") == SECRET and form.get("response") == GOOD_TOKEN
                    answer = {"success": ok}
                    if not ok:
                        answer["error-codes"] = ["invalid-input-response"]
                    body = json.dumps(answer).encode()
                self.send_response(provider.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        scheme = "http"
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/siteverify"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    fake = FakeProvider()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """``(cert.pem, key.pem)`` of a self-signed certificate for IP 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl program is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_provider(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    fake = FakeProvider(context)
    yield fake
    fake.stop()
