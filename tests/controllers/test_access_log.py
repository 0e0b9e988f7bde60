"""The access log: one line per request, combined or JSON, never a credential."""

import json
import logging
import re

import pytest

from syncserver.web.access_log import AccessLogMiddleware
from tests.controllers.conftest import register

COMBINED = re.compile(
    r'(?P<client>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" '
    r'(?P<ms>\d+\.\d)$')


@pytest.fixture
def access_lines(caplog):
    caplog.set_level(logging.INFO, logger="syncserver.access")

    def lines():
        return [record.getMessage() for record in caplog.records
                if record.name == "syncserver.access"]
    return lines


def test_combined_lines(make_test_app, access_lines):
    app = make_test_app(**{"logging.access_log": "true"})
    alice = register(app, "alice@example.com")
    response = app.put_json(f"{alice.root}/storage/tabs/t1", {"payload": "x"},
                            headers=dict(alice.headers, **{"User-Agent": 'Firefox "4"',
                                                           "Referer": "http://r/"}),
                            extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    lines = access_lines()
    assert len(lines) == 2, lines  # the registration and the PUT
    match = COMBINED.fullmatch(lines[1])
    assert match, lines[1]
    assert match["client"] == "127.0.0.1"
    assert match["user"] == alice.username
    assert match["request"] == f"PUT {alice.root}/storage/tabs/t1 HTTP/1.0"
    assert match["status"] == "200"
    assert int(match["bytes"]) == len(response.body)
    assert match["referer"] == "http://r/"
    assert match["agent"] == 'Firefox \\x224\\x22'
    assert re.fullmatch(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", match["time"])
    # The registration carried the password in its body; no line carries anything secret.
    assert "correct horse" not in "\n".join(lines)
    assert alice.headers["Authorization"].split()[1] not in "\n".join(lines)


def test_json_lines_and_failed_logins(make_test_app, access_lines):
    app = make_test_app(**{"logging.access_log": "true", "logging.access_format": "json"})
    alice = register(app, "alice@example.com")
    app.get(f"{alice.root}/info/collections?client=x&password=hunter2&token=abc",
            headers={"Authorization": "Basic " + "YWxpY2U6aHVudGVyMg=="}, status=401)
    entry = json.loads(access_lines()[-1])
    assert set(entry) == {"time", "client", "user", "method", "path", "protocol", "status",
                          "bytes", "referer", "user_agent", "duration_ms"}
    assert entry["status"] == 401
    assert entry["user"] is None  # nobody logged in
    assert entry["method"] == "GET"
    assert entry["path"] == (
        f"{alice.root}/info/collections?client=x&password=redacted&token=redacted")
    assert "hunter2" not in access_lines()[-1]
    assert "YWxpY2U6aHVudGVyMg" not in access_lines()[-1]
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0


def test_off_by_default(make_test_app, access_lines):
    app = make_test_app()
    assert not isinstance(app.app, AccessLogMiddleware)
    app.get("/__heartbeat__")
    assert access_lines() == []


def test_a_crash_inside_the_wrapped_app_is_logged_as_500(access_lines):
    def broken(environ, start_response):
        raise RuntimeError("boom")

    app = AccessLogMiddleware(broken)
    with pytest.raises(RuntimeError):
        app({"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "REMOTE_ADDR": "192.0.2.1",
             "SERVER_PROTOCOL": "HTTP/1.1"}, lambda *args: None)
    assert COMBINED.fullmatch(access_lines()[0])["status"] == "500"
