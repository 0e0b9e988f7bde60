"""Malformed requests through the real WSGI servers: 400s, never a crash (issue 12, items 5-6).

Each request is written byte by byte on a raw socket, to gunicorn and to
waitress (``paster serve``), both started from development.ini on free
ports: invalid UTF-8 in a query, a chunked body with a bad chunk size, a
client that hangs up in the middle of its body, forged or doubled Host
headers, an upload far beyond the limits. Every answer is a 4xx (or, when
the server itself gave up on the connection, no answer), and the server's
log gets no ERROR line, no crash id and no traceback.
"""

import re
import socket
import time

import pytest

from tests.e2e.conftest import (
    Client,
    RunningServer,
    free_port,
    register,
    sync_username,
    write_ini,
)
from tests.services import GunicornServer

pytestmark = pytest.mark.e2e

#: The reset pages read their query only when password reset is on.
SETTINGS = {"smtp.host": "127.0.0.1", "smtp.port": "9", "smtp.sender": "sync@example.org"}
CRASH = re.compile(r"\bERROR\b|crash id|Traceback|CRITICAL")
ANSWER_TIMEOUT = 20


class Server:
    """One running server of either kind: ``url``, ``port`` and the lines it logged so far."""

    def __init__(self, kind, directory):
        self.kind = kind
        if kind == "gunicorn":
            ini = write_ini(directory, 0, SETTINGS)
            self.process = GunicornServer(ini, directory, threads=4).start()
            self.port = self.process.port
        else:
            self.port = free_port()
            ini = write_ini(directory, self.port, SETTINGS)
            self.process = RunningServer(ini, directory, self.port).start()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen = 0

    def log(self):
        if self.kind == "gunicorn":
            return self.process.log()
        return self.process.stderr()

    def new_log(self):
        """What the server logged since the last call (after a moment to flush)."""
        time.sleep(0.3)
        text = self.log()
        new, self.seen = text[self.seen:], len(text)
        return new

    def stop(self):
        self.process.stop()


@pytest.fixture(scope="module", params=["gunicorn", "waitress"])
def server(request, tmp_path_factory):
    running = Server(request.param, tmp_path_factory.mktemp(request.param))
    yield running
    running.stop()


@pytest.fixture
def quiet_log(server):
    """Fail the test if the server logs an error or a crash while it runs."""
    server.new_log()
    yield
    logged = server.new_log()
    assert not CRASH.search(logged), logged


def exchange(port, data, hang_up=False, then=b""):
    """Send ``data`` (and ``then``; then half-close if ``hang_up``); read the answer to EOF.

    Returns ``(status, headers, raw answer)``; ``status`` is None when the
    server closed the connection, or kept it silent for ``ANSWER_TIMEOUT``
    seconds, without answering.
    """
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as connection:
        try:
            connection.sendall(data)
            if then:
                connection.sendall(then)
            if hang_up:
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed early: what the caller checks
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if not answer:
        return None, {}, answer
    head = answer.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    return int(head[0].split()[1]), headers, answer


def request_bytes(method, path, headers=(), body=b"", host="127.0.0.1"):
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [*headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.mark.parametrize("path", [
    "/weave-password-reset?a=%ff",
    "/weave-password-reset?key=%C3%28&username=x",
    "/weave-password-reset?username=%ff",
])
def test_invalid_utf8_in_a_query_is_a_400(server, quiet_log, path):
    status, headers, _ = exchange(server.port, request_bytes("GET", path))
    assert status == 400
    assert "X-Weave-Timestamp" in headers  # the application's own answer


def test_invalid_utf8_in_a_storage_query_is_a_400(server, quiet_log):
    _, username, password = register(server, "query")
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    try:
        assert client.get("storage/history?ids=%ff").status == 400
        assert client.get("storage/history?newer=%ff%fe").status == 400
    finally:
        client.close()


@pytest.mark.parametrize("path", ["/user/1.0/{new}", "/user/1.0/{new}/password"])
def test_a_bad_chunk_size_is_a_400(server, quiet_log, path):
    path = path.format(new=sync_username(f"chunk-{time.monotonic_ns()}@example.com"))
    body = b"ZZ\r\n{\"a\": 1}\r\n0\r\n\r\n"
    status, _, _ = exchange(server.port, request_bytes(
        "PUT" if path.count("/") == 3 else "POST", path,
        ["Transfer-Encoding: chunked", "Content-Type: application/json"], body))
    assert status == 400


def test_a_bad_chunk_size_in_a_storage_write_is_a_400(server, quiet_log):
    _, username, password = register(server, "chunk")
    client = Client(server.url, username, password)
    authorization = client.auth_header()
    client.close()
    status, _, _ = exchange(server.port, request_bytes(
        "POST", f"/1.1/{username}/storage/history",
        ["Transfer-Encoding: chunked", "Content-Type: application/json",
         f"Authorization: {authorization}"], b"1x\r\n[\r\n0\r\n\r\n"))
    assert status == 400


@pytest.mark.parametrize("framing, partial", [
    ("Content-Length: 1000", b'{"password": "half a bo'),
    ("Transfer-Encoding: chunked", b"40\r\n{\"password\": \"half"),
])
def test_a_client_hanging_up_mid_body_is_no_crash(server, quiet_log, framing, partial):
    path = "/user/1.0/" + sync_username(f"hangup-{time.monotonic_ns()}@example.com")
    status, _, _ = exchange(server.port, request_bytes(
        "PUT", path, [framing, "Content-Type: application/json"], partial), hang_up=True)
    # gunicorn hands the half body to the application, which answers 400; waitress
    # waits for the whole body itself and closes the connection without calling it.
    assert status in (400, None)


def test_two_host_headers_are_a_400(server, quiet_log):
    _, username, _ = register(server, "host")
    path = f"/user/1.0/{username}/node/weave"
    status, _, answer = exchange(server.port, request_bytes(
        "GET", path, ["Host: evil.example"], host="127.0.0.1"))
    assert status == 400, answer
    assert b"evil.example" not in answer.split(b"\r\n\r\n", 1)[-1]


@pytest.mark.parametrize("host", ["evil.example/x?y=", "evil.example:80:80", "a b"])
def test_a_host_that_is_no_host_name_is_a_400(server, quiet_log, host):
    _, username, _ = register(server, "host")
    status, _, answer = exchange(server.port, request_bytes(
        "GET", f"/user/1.0/{username}/node/weave", host=host))
    assert status == 400, answer


def test_an_oversized_upload_is_refused_before_it_is_read(server, quiet_log):
    """200 MiB announced: the answer comes after the first 64 KiB, not after 200 MiB."""
    path = "/user/1.0/" + sync_username(f"big-{time.monotonic_ns()}@example.com")
    head = request_bytes("PUT", path, [f"Content-Length: {200 * 1024 * 1024}",
                                       "Content-Type: application/json"])
    status, _, _ = exchange(server.port, head, then=b"x" * 65536)
    assert status == 413
