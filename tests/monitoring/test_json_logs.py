"""JSON log lines (syncserver.logfmt.JSONFormatter): crash ids as a field, never a secret."""

import base64
import io
import json
import logging
import logging.config
import re

import pytest
import webtest

from syncserver.app import make_app
from syncserver.logfmt import JSONFormatter
from tests.controllers.conftest import register
from tests.services import free_port
from tests.support import app_settings

PASSWORD = "pa55-Secret-Wörd"
CRASH_ID = re.compile(r'"application error: crash id ([0-9a-f]{32})"')


@pytest.fixture
def json_log():
    """Every record of the ``syncserver`` loggers, as JSONFormatter writes it; a list of dicts."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("syncserver")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    entries = []

    def read():
        entries[:] = [json.loads(line) for line in stream.getvalue().splitlines()]
        return entries, stream.getvalue()

    yield read
    logger.removeHandler(handler)
    logger.setLevel(previous_level)


def test_crash_lines_carry_the_crash_id_and_no_secret(sqlite_url, json_log):
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    wsgi_app = make_app({}, **app_settings(sqlite_url, **{
        "auth.sqluri": down, "auth.create_tables": "false", "throttle.sqluri": sqlite_url}))
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    try:
        response = webtest.TestApp(wsgi_app).get(
            "/1.1/alice/info/collections", headers={"Authorization": "Basic " + token},
            status=503)
    finally:
        wsgi_app.close()
    crash_id = CRASH_ID.fullmatch(response.text).group(1)
    entries, raw = json_log()
    (crash,) = [entry for entry in entries if entry.get("crash_id")]
    assert crash["crash_id"] == crash_id
    assert crash["status"] == 503
    assert crash["level"] == "ERROR"
    assert crash["logger"] == "syncserver"
    assert crash_id in crash["message"]
    assert "AuthUnavailable" in crash["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", crash["time"])
    for secret in (PASSWORD, token, json.dumps(PASSWORD)[1:-1]):
        assert secret not in raw


def test_failed_logins_log_no_secret(sqlite_url, json_log):
    wsgi_app = make_app({}, **app_settings(sqlite_url))
    try:
        app = webtest.TestApp(wsgi_app)
        alice = register(app, "alice@example.com", password="the real one")
        token = base64.b64encode(f"{alice.username}:{PASSWORD}".encode()).decode()
        app.get(f"{alice.root}/info/collections", headers={"Authorization": "Basic " + token},
                status=401)
    finally:
        wsgi_app.close()
    entries, raw = json_log()
    assert any(entry["logger"] == "syncserver.security" and "AuthFail" in entry["message"]
               for entry in entries)
    for secret in (PASSWORD, token, "the real one"):
        assert secret not in raw


def test_usable_from_an_ini_logging_section(tmp_path):
    """``[formatter_json] class = syncserver.logfmt.JSONFormatter`` as paster reads it."""
    output = tmp_path / "log.jsonl"
    ini = tmp_path / "logging.ini"
    ini.write_text(f"""
[loggers]
keys = root

[handlers]
keys = file

[formatters]
keys = json

[logger_root]
level = INFO
handlers = file

[handler_file]
class = FileHandler
args = ({str(output)!r},)
formatter = json

[formatter_json]
class = syncserver.logfmt.JSONFormatter
""")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.config.fileConfig(ini, disable_existing_loggers=False)
    try:
        logging.getLogger("syncserver.test").warning("hello %s", "wörld", extra={"n": 3})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("syncserver.test").exception("failed")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = (json.loads(line) for line in output.read_text("utf-8").splitlines())
    assert first["message"] == "hello wörld"
    assert first["level"] == "WARNING" and first["logger"] == "syncserver.test"
    assert first["n"] == 3
    assert "exception" not in first
    assert second["message"] == "failed"
    assert "ValueError: boom" in second["exception"]
