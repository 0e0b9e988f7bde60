"""/__heartbeat__: one entry per configured service, with real services stopped or unreachable."""

import logging
import socket
import threading

import pytest
import webtest

from syncserver.accounts.mail import Mailer
from syncserver.app import make_app
from syncserver.health import Dependency, Heartbeat
from syncserver.settings import SMTPSettings
from tests.services import SMTPServer, free_port
from tests.support import app_settings


@pytest.fixture
def build(sqlite_url):
    """Make a TestApp from extra settings on a SQLite database; closed after the test."""
    built = []

    def build(**overrides):
        wsgi_app = make_app({}, **app_settings(sqlite_url, **overrides))
        built.append(wsgi_app)
        return webtest.TestApp(wsgi_app)

    yield build
    for wsgi_app in built:
        wsgi_app.close()


def closed_url(scheme="redis"):
    return f"{scheme}://127.0.0.1:{free_port()}/0"


def test_every_default_dependency_is_reported_with_its_latency(build):
    response = build().get("/__heartbeat__", status=200)
    assert response.headers["Cache-Control"] == "no-store"
    report = response.json
    assert report["status"] == "ok"
    assert list(report["checks"]) == ["storage", "auth", "throttle"]
    for name, critical in (("storage", True), ("auth", True), ("throttle", False)):
        entry = report["checks"][name]
        assert entry["status"] == "ok"
        assert entry["critical"] is critical
        assert isinstance(entry["latency_ms"], float) and entry["latency_ms"] >= 0


def test_without_throttle_there_is_no_throttle_entry(build):
    report = build(**{"throttle.enabled": "false"}).get("/__heartbeat__").json
    assert list(report["checks"]) == ["storage", "auth"]


def test_redis_cache_down_is_degraded_not_503_and_logged_once(build, redis_server, redis_url,
                                                              caplog):
    caplog.set_level(logging.INFO, logger="syncserver.health")
    app = build(**{"storage.backend": "redis", "storage.wrapped_backend": "sql",
                   "storage.redis_url": redis_url})
    report = app.get("/__heartbeat__", status=200).json
    assert report["status"] == "ok"
    assert report["checks"]["storage_cache"] == {
        "status": "ok", "latency_ms": report["checks"]["storage_cache"]["latency_ms"],
        "critical": False}
    redis_server.stop()
    try:
        for _ in range(2):
            report = app.get("/__heartbeat__", status=200).json
            assert report["status"] == "degraded"
            assert report["checks"]["storage_cache"]["status"] == "unavailable"
            assert report["checks"]["storage"]["status"] == "ok"
        down = [r for r in caplog.records if "storage_cache is unavailable" in r.getMessage()]
        assert len(down) == 1, caplog.text
    finally:
        redis_server.start()
    assert app.get("/__heartbeat__", status=200).json["status"] == "ok"
    assert any("storage_cache answers again" in r.getMessage() for r in caplog.records)


def test_auth_database_down_is_503(build, sqlite_url):
    app = build(**{"auth.sqluri": closed_url("postgresql+psycopg").replace("/0", "/x"),
                   "auth.create_tables": "false", "throttle.sqluri": sqlite_url})
    report = app.get("/__heartbeat__", status=503).json
    assert report["status"] == "unavailable"
    assert report["checks"]["auth"]["status"] == "unavailable"
    assert report["checks"]["storage"]["status"] == "ok"


def test_throttle_store_down_is_degraded(build):
    report = build(**{"throttle.redis_url": closed_url()}).get("/__heartbeat__", status=200).json
    assert report["status"] == "degraded"
    assert report["checks"]["throttle"] == {
        "status": "unavailable", "latency_ms": report["checks"]["throttle"]["latency_ms"],
        "critical": False}


def test_node_database_down_is_503(build, private_mariadb, private_mysql_url):
    app = build(**{"nodes.assignment": "true", "nodes.sqluri": private_mysql_url,
                   "nodes.create_tables": "true"})
    report = app.get("/__heartbeat__", status=200).json
    assert report["checks"]["nodes"] == {
        "status": "ok", "latency_ms": report["checks"]["nodes"]["latency_ms"], "critical": True}
    private_mariadb.kill()
    report = app.get("/__heartbeat__", status=503).json
    assert report["status"] == "unavailable"
    assert report["checks"]["nodes"]["status"] == "unavailable"
    assert report["checks"]["storage"]["status"] == "ok"


def test_smtp_and_reset_codes_are_checked_and_smtp_answers_are_reused(build):
    """The mail server is asked once a minute at most; a stopped one is then seen by a new app."""
    server = SMTPServer().start()
    try:
        settings = {"smtp.host": "127.0.0.1", "smtp.port": str(server.port),
                    "smtp.sender": "sync@example.org"}
        app = build(**settings)
        report = app.get("/__heartbeat__", status=200).json
        assert report["status"] == "ok"
        assert report["checks"]["smtp"]["status"] == "ok"
        assert report["checks"]["reset_codes"]["status"] == "ok"
        assert report["checks"]["smtp"]["critical"] is False
        assert server.messages == []  # a check sends no mail
    finally:
        server.stop()
    # Within SMTP_CHECK_SECONDS the last answer stands.
    assert app.get("/__heartbeat__").json["checks"]["smtp"]["status"] == "ok"
    report = build(**settings).get("/__heartbeat__", status=200).json
    assert report["status"] == "degraded"
    assert report["checks"]["smtp"]["status"] == "unavailable"


def test_cached_answers_expire():
    now = [100.0]
    calls = []

    def check():
        calls.append(now[0])
        return len(calls) == 1

    heartbeat = Heartbeat([Dependency("smtp", check, critical=False, max_age=60)],
                          clock=lambda: now[0])
    try:
        assert heartbeat.report()[1]["status"] == "ok"
        now[0] += 59
        assert heartbeat.report()[1]["status"] == "ok"
        assert len(calls) == 1
        now[0] += 2
        assert heartbeat.report() == (200, {"status": "degraded", "checks": {"smtp": {
            "status": "unavailable", "latency_ms": 0.0, "critical": False}}})
        assert len(calls) == 2
    finally:
        heartbeat.close()


def test_a_mail_server_that_never_answers_is_unavailable_within_the_deadline():
    """A listening socket that never greets: the check hangs; the heartbeat does not wait for it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mailer = Mailer(SMTPSettings(host="127.0.0.1", port=silent.getsockname()[1],
                                     sender="s@example.org", timeout=5))
        heartbeat = Heartbeat([
            Dependency("smtp", lambda: mailer.is_healthy(timeout=5), critical=False),
            Dependency("storage", lambda: True)], timeout=0.3)
        try:
            status, report = heartbeat.report()
        finally:
            heartbeat.close()
    assert status == 200
    assert report["status"] == "degraded"
    assert report["checks"]["smtp"]["status"] == "unavailable"
    assert report["checks"]["storage"]["status"] == "ok"


def test_a_hanging_check_is_not_started_again_by_the_next_heartbeat():
    release = threading.Event()
    calls = []

    def check():
        calls.append(1)
        return release.wait(10)

    heartbeat = Heartbeat([Dependency("storage", check)], timeout=0.1)
    try:
        assert heartbeat.report()[0] == 503
        assert heartbeat.report()[0] == 503
        assert len(calls) == 1
        release.set()
        assert heartbeat.report()[0] == 200
        assert len(calls) == 1  # the same, finished check
        assert heartbeat.report()[0] == 200
        assert len(calls) == 2
    finally:
        heartbeat.close()


def test_a_check_that_raises_is_unavailable(caplog):
    def broken():
        raise RuntimeError("bug in a plugin")

    heartbeat = Heartbeat([Dependency("storage", broken)])
    try:
        status, report = heartbeat.report()
    finally:
        heartbeat.close()
    assert status == 503
    assert report["checks"]["storage"]["status"] == "unavailable"
    assert "bug in a plugin" in caplog.text
