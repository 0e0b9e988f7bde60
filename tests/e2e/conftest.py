"""End-to-end fixtures: a real ``paster serve`` process on a free port, and a stdlib HTTP client.

Each server gets its own ini in a temporary folder that composes the
project's ``development.ini`` (``use = config:...``) and overrides only the
database files, so the tests exercise the configuration users run. The
client is deliberately the standard library only (``http.client``), like a
script or a 1.1 client would be: no WebTest, no requests.
"""

import base64
import contextlib
import hashlib
import http.client
import importlib.metadata
import json
import re
import select
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_INI = PROJECT_ROOT / "development.ini"
PASTER = Path(sys.executable).parent / "paster"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

#: Exactly two decimals, as in every timestamp the server writes.
TIMESTAMP_RE = re.compile(r"-?\d+\.\d{2}")

#: Weave error codes a 400 with a JSON body may carry.
WEAVE_CODES = set(range(1, 18))


def sync_username(email):
    """The Sync 1.1 username of an e-mail address (what clients compute)."""
    return base64.b32encode(hashlib.sha1(email.lower().encode()).digest()).decode().lower()


def new_account(prefix="e2e"):
    """A fresh (email, username, password) triple."""
    email = f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"
    return email, sync_username(email), "pass-" + uuid.uuid4().hex


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timestamp(text):
    """Parse a timestamp written by the server, checking its two-decimal form."""
    assert isinstance(text, str) and TIMESTAMP_RE.fullmatch(text), f"bad timestamp {text!r}"
    return Decimal(text)


# --- HTTP client ------------------------------------------------------------------


class HTTPResponse:
    """What the server answered: status, headers (case-insensitive) and raw body bytes."""

    def __init__(self, method, url, status, reason, headers, body):
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8")

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body, parse_float=Decimal)

    @property
    def weave_timestamp(self):
        return timestamp(self.headers.get("X-Weave-Timestamp"))

    def __repr__(self):
        return f"<{self.method} {self.url} -> {self.status} {self.body[:300]!r}>"


class Client:
    """A minimal Sync client: one keep-alive connection, optional Basic auth.

    ``base`` is a URL; a relative path is appended to it, a path starting with
    ``/`` replaces its path. Every response is checked for a well-formed
    ``X-Weave-Timestamp`` (the server sends it on every response, errors too).

    Like any HTTP client that keeps connections, it checks before each request
    that the server has not closed the idle connection meanwhile (gunicorn
    does after ``--keep-alive`` seconds, Apache after ``KeepAliveTimeout``),
    and opens a new one if it has: sending on a closed connection would fail
    with ``RemoteDisconnected`` although the server did nothing wrong. A
    connection that closes *after* the request was sent is still an error.
    """

    def __init__(self, base, username=None, password=None, timeout=60):
        parsed = urllib.parse.urlsplit(base)
        self.host = parsed.hostname
        self.port = parsed.port
        self.base_path = parsed.path if parsed.path.endswith("/") else parsed.path + "/"
        self.username = username
        self.password = password
        self.timeout = timeout
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def close(self):
        self.connection.close()

    def auth_header(self, username=None, password=None):
        username = self.username if username is None else username
        password = self.password if password is None else password
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return "Basic " + token

    def url(self, path):
        return path if path.startswith("/") else self.base_path + path

    def request(self, method, path, body=None, headers=None, auth=True,
                content_type="application/json"):
        url = self.url(path)
        all_headers = {}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and content_type:
            all_headers["Content-Type"] = content_type
        if auth and self.username is not None:
            all_headers["Authorization"] = self.auth_header()
        all_headers.update(headers or {})
        if body is None and method in ("PUT", "POST"):
            body = b""
        if _closed_by_peer(self.connection.sock):
            self.connection.close()  # reopened by the request below
        self.connection.request(method, url, body=body, headers=all_headers)
        raw = self.connection.getresponse()
        data = raw.read()
        response = HTTPResponse(method, url, raw.status, raw.reason, raw.headers, data)
        check_weave_timestamp(response)
        return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def _closed_by_peer(sock):
    """True when an idle keep-alive socket has been closed (or reset) by the server."""
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def check_weave_timestamp(response):
    value = response.headers.get("X-Weave-Timestamp")
    assert value is not None, f"no X-Weave-Timestamp on {response!r}"
    assert TIMESTAMP_RE.fullmatch(value), f"malformed X-Weave-Timestamp {value!r} on {response!r}"
    if response.status == 400 and response.content_type == "application/json":
        code = json.loads(response.body)
        assert isinstance(code, int) and code in WEAVE_CODES, f"400 with JSON body {code!r}"


# --- the server process ----------------------------------------------------------------


def write_ini(directory, port, app_overrides=None, sqluri=None):
    """Write ``syncserver-e2e.ini`` composing development.ini; return its path."""
    directory = Path(directory)
    if sqluri is None:
        sqluri = f"sqlite:///{directory / 'e2e.db'}"
    app = {"storage.sqluri": sqluri, "auth.sqluri": sqluri}
    app.update(app_overrides or {})
    lines = ["[app:main]", f"use = config:{DEVELOPMENT_INI}"]
    lines += [f"{key} = {value}" for key, value in app.items()]
    # development.ini's own server (threads, body limit...), on the test's port.
    lines += ["", "[server:main]", f"use = config:{DEVELOPMENT_INI}", f"port = {port}"]
    path = directory / "syncserver-e2e.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def require_installed():
    """``use = egg:syncserver`` needs the distribution's entry point in the virtualenv."""
    try:
        importlib.metadata.distribution("syncserver")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("syncserver is not installed in the virtualenv, so paster cannot load "
                    "egg:syncserver: run `.venv/bin/pip install -e .` (scripts/test.sh does it).",
                    pytrace=False)
    assert PASTER.exists(), f"paster not found at {PASTER}"


class RunningServer:
    """A ``paster serve`` subprocess; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, ini, directory, port):
        self.ini = Path(ini)
        self.directory = Path(directory)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stdout_path = self.directory / "server.stdout"
        self.stderr_path = self.directory / "server.stderr"
        self.process = None

    def start(self):
        require_installed()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                [str(PASTER), "serve", str(self.ini)], cwd=self.directory,
                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"paster serve exited with {self.process.returncode} before "
                            f"answering:\n{self.stderr()}", pytrace=False)
            try:
                with urllib.request.urlopen(self.url + "/__heartbeat__", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"the server did not answer /__heartbeat__ with 200 within "
                    f"{START_TIMEOUT:.0f} s:\n{self.stderr()}", pytrace=False)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def stderr(self):
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def running_server(directory, app_overrides=None, sqluri=None):
    """Start a server for ``directory`` (ini + database there); stop it afterwards."""
    port = free_port()
    ini = write_ini(directory, port, app_overrides, sqluri)
    server = RunningServer(ini, directory, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server per test module, on a SQLite file in a temporary folder."""
    with running_server(tmp_path_factory.mktemp("e2e-server")) as running:
        yield running


def register(server, prefix="e2e"):
    """Create a fresh account through the User API; return (email, username, password)."""
    email, username, password = new_account(prefix)
    client = Client(server.url)
    try:
        response = client.put(f"/user/1.0/{username}", {"password": password, "email": email})
        assert response.status == 200, response
        assert response.text == username
    finally:
        client.close()
    return email, username, password


@pytest.fixture(scope="module")
def account(server):
    """A registered account on the module's server: (email, username, password)."""
    return register(server)


@pytest.fixture
def storage_client(server, account):
    """A client whose base is ``<server>/1.1/<username>/`` with Basic auth."""
    _, username, password = account
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    yield client
    client.close()
