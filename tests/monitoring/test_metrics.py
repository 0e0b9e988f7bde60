"""The Prometheus metrics page: what it counts, and who may read it (everyone else: 404)."""

import os
import signal
import urllib.request

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families

from syncserver import metrics
from syncserver.app import make_app
from syncserver.errors import ConfigError
from syncserver.settings import parse_settings
from tests.controllers.conftest import register
from tests.services import free_port
from tests.support import app_settings, basic_auth

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def build(sqlite_url):
    built = []

    def build(**overrides):
        settings = {"metrics.enabled": "true", **overrides}
        wsgi_app = make_app({}, **app_settings(sqlite_url, **settings))
        built.append(wsgi_app)
        return webtest.TestApp(wsgi_app)

    yield build
    for wsgi_app in built:
        wsgi_app.close()


def samples(text):
    """``{(name, frozenset(labels.items())): value}`` of a scrape."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(scrape, name, **labels):
    return samples(scrape).get((name, frozenset(labels.items())), 0.0)


def scrape(app, **kwargs):
    response = app.get("/__metrics__", extra_environ=LOCAL, status=200, **kwargs)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return response.text


def test_requests_are_counted_by_route_and_status_never_by_username(build):
    app = build()
    alice = register(app, "alice@example.com")
    app.get(f"{alice.root}/info/collections", headers=alice.headers)
    app.get(f"{alice.root}/info/collections", headers=alice.headers)
    app.get(f"{alice.root}/storage/nosuch/item", headers=alice.headers, status=404)
    app.get("/no/such/path", status=404)
    text = scrape(app)
    assert value(text, "syncserver_requests_total", route="user.create_user", status="200") == 1
    assert value(text, "syncserver_requests_total",
                 route="storage.get_collection_timestamps", status="200") == 2
    assert value(text, "syncserver_requests_total", route="storage.get_item", status="404") == 1
    assert value(text, "syncserver_requests_total", route="unmatched", status="404") == 1
    assert value(text, "syncserver_request_duration_seconds_count",
                 route="storage.get_collection_timestamps") == 2
    assert value(text, "syncserver_request_duration_seconds_bucket",
                 route="storage.get_collection_timestamps", le="+Inf") == 2
    assert alice.username not in text and "alice" not in text
    # Counters move between scrapes.
    app.get(f"{alice.root}/info/collections", headers=alice.headers)
    assert value(scrape(app), "syncserver_requests_total",
                 route="storage.get_collection_timestamps", status="200") == 3


def test_auth_failures_and_throttle_refusals(build):
    app = build(**{"throttle.max_failures": "2", "throttle.delay_after": "10"})
    alice = register(app, "alice@example.com")
    wrong = basic_auth(alice.username, "wrong password")
    for _ in range(2):
        app.get(f"{alice.root}/info/collections", headers=wrong, status=401)
    app.get(f"{alice.root}/info/collections", headers=wrong, status=429)
    app.get(f"{alice.root}/info/collections", status=401)
    app.get(f"{alice.root}/info/collections", headers=basic_auth("bob", "x"), status=401)
    text = scrape(app)
    assert value(text, "syncserver_auth_failures_total", reason="wrong_password") == 2
    assert value(text, "syncserver_auth_failures_total", reason="no_credentials") == 1
    assert value(text, "syncserver_auth_failures_total", reason="username_mismatch") == 1
    assert value(text, "syncserver_throttle_refusals_total", scope="login-pair") == 1
    assert value(text, "syncserver_requests_total",
                 route="storage.get_collection_timestamps", status="429") == 1


def test_database_down_counts_the_service_and_the_crash(build, sqlite_url):
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    app = build(**{"auth.sqluri": down, "auth.create_tables": "false",
                   "throttle.sqluri": sqlite_url})
    app.get("/1.1/alice/info/collections", headers=basic_auth("alice", "secret"), status=503)
    text = scrape(app)
    assert value(text, "syncserver_backend_unavailable_total", service="auth") == 1
    assert value(text, "syncserver_crashes_total", status="503") == 1
    assert value(text, "syncserver_requests_total",
                 route="storage.get_collection_timestamps", status="503") == 1


def test_storage_cache_hits_and_misses(build, redis_server, redis_url):
    app = build(**{"storage.backend": "redis", "storage.wrapped_backend": "sql",
                   "storage.redis_url": redis_url})
    alice = register(app, "alice@example.com")
    for _ in range(3):
        app.get(f"{alice.root}/info/collections", headers=alice.headers)
    text = scrape(app)
    assert value(text, "syncserver_storage_cache_misses_total", field="stamps") == 1
    assert value(text, "syncserver_storage_cache_hits_total", field="stamps") == 2
    redis_server.stop()
    try:
        app.get(f"{alice.root}/info/collections", headers=alice.headers)
    finally:
        redis_server.start()
    text = scrape(app)
    assert value(text, "syncserver_storage_cache_misses_total", field="stamps") == 2
    assert value(text, "syncserver_backend_unavailable_total", service="storage_cache") == 1


def test_other_addresses_get_the_404_of_an_unknown_path(build):
    app = build()
    unknown = app.get("/__nothing__", extra_environ={"REMOTE_ADDR": "203.0.113.9"}, status=404)
    refused = app.get("/__metrics__", extra_environ={"REMOTE_ADDR": "203.0.113.9"}, status=404)
    assert refused.body == unknown.body
    assert refused.headers["Content-Type"] == unknown.headers["Content-Type"]
    # A forged X-Forwarded-For from an untrusted peer changes nothing.
    app.get("/__metrics__", headers={"X-Forwarded-For": "127.0.0.1"},
            extra_environ={"REMOTE_ADDR": "203.0.113.9"}, status=404)
    app.get("/__metrics__", extra_environ={"REMOTE_ADDR": "::1"}, status=200)


def test_allowed_networks_behind_a_trusted_proxy(build):
    app = build(**{"metrics.allowed_addresses": "10.1.0.0/16",
                   "global.trusted_proxies": "127.0.0.1"})
    app.get("/__metrics__", extra_environ=LOCAL, status=404)  # the proxy itself is not allowed
    app.get("/__metrics__", headers={"X-Forwarded-For": "10.1.2.3"}, extra_environ=LOCAL,
            status=200)
    app.get("/__metrics__", headers={"X-Forwarded-For": "10.2.0.1"}, extra_environ=LOCAL,
            status=404)


def test_token(build):
    app = build(**{"metrics.token": "s3cret-token", "metrics.path": "/ops/metrics"})
    app.get("/ops/metrics", extra_environ=LOCAL, status=404)
    app.get("/ops/metrics", headers={"Authorization": "Bearer wrong"}, extra_environ=LOCAL,
            status=404)
    app.get("/ops/metrics", headers={"Authorization": "Basic s3cret-token"},
            extra_environ=LOCAL, status=404)
    response = app.get("/ops/metrics/", headers={"Authorization": "Bearer s3cret-token"},
                       extra_environ=LOCAL, status=200)
    assert "syncserver_requests_total" in response.text
    app.get("/__metrics__", extra_environ=LOCAL, status=404)


def test_disabled_by_default_and_nothing_installed(sqlite_url):
    wsgi_app = make_app({}, **app_settings(sqlite_url))
    try:
        assert wsgi_app.metrics is None
        assert metrics.recorder is metrics.NO_METRICS
        webtest.TestApp(wsgi_app).get("/__metrics__", extra_environ=LOCAL, status=404)
    finally:
        wsgi_app.close()


def test_closing_the_app_uninstalls_its_recorder(build):
    app = build()
    assert metrics.recorder is app.app.metrics
    app.app.close()
    assert metrics.recorder is metrics.NO_METRICS


@pytest.mark.parametrize("key, value", [
    ("metrics.path", "metrics"),
    ("metrics.path", "/"),
    ("metrics.allowed_addresses", "localhost"),
    ("metrics.enabled", "maybe"),
])
def test_bad_settings_stop_start_up(key, value):
    with pytest.raises(ConfigError, match=key):
        parse_settings({"storage.sqluri": "sqlite://", key: value})


@pytest.mark.e2e
def test_scraped_over_http_from_paster_serve(tmp_path):
    from tests.e2e.conftest import RunningServer, write_ini

    port = free_port()
    ini = write_ini(tmp_path, port, {"metrics.enabled": "true"})
    server = RunningServer(ini, tmp_path, port).start()
    try:
        for _ in range(3):
            with urllib.request.urlopen(server.url + "/user/1.0/nobody", timeout=10) as answer:
                assert answer.read() == b"0"
        with urllib.request.urlopen(server.url + "/__metrics__", timeout=10) as answer:
            assert answer.status == 200
            text = answer.read().decode()
    finally:
        server.stop()
    assert value(text, "syncserver_requests_total", route="user.user_exists", status="200") == 3
    assert value(text, "syncserver_requests_total", route="misc.heartbeat", status="200") >= 1


@pytest.mark.deploy
def test_gunicorn_workers_share_their_counts(tmp_path, monkeypatch):
    """Under several worker processes, PROMETHEUS_MULTIPROC_DIR adds up every worker's counts."""
    from tests.e2e.conftest import write_ini
    from tests.services import GunicornServer

    if GunicornServer.program() is None:
        from tests.conftest import service_missing

        service_missing("gunicorn", "not installed")
    folder = tmp_path / "prometheus"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    ini = write_ini(tmp_path, free_port(), {"metrics.enabled": "true"})
    server = GunicornServer(ini, tmp_path, workers=2, threads=2).start()
    try:
        first, second = server.worker_pids()
        # Each phase freezes one worker, so the other answers every request of it.
        for frozen, counted in ((second, 5), (first, 7)):
            os.kill(frozen, signal.SIGSTOP)
            try:
                for _ in range(counted):
                    with urllib.request.urlopen(server.url + "/user/1.0/nobody",
                                                timeout=10) as answer:
                        answer.read()
            finally:
                os.kill(frozen, signal.SIGCONT)
        assert {first, second} <= _pids_with_counts(folder)
        for _ in range(6):  # whichever worker answers the scrape, it reports both
            with urllib.request.urlopen(server.url + "/__metrics__", timeout=10) as answer:
                text = answer.read().decode()
            assert value(text, "syncserver_requests_total", route="user.user_exists",
                         status="200") == 12
    finally:
        server.stop()


def _pids_with_counts(folder):
    """The processes that counted a request (prometheus_client names files ``counter_<pid>.db``)."""
    return {int(path.stem.split("_")[1]) for path in folder.glob("counter_*.db")}
