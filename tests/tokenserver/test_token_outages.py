"""The accounts server or the database down, slow or rotating keys: 503 with Retry-After, never 401.

A 401 makes desktop Firefox ask its user to sign in again (reference §6.4),
so an outage of anything but the client's own credentials must be a 503.
The accounts server is the fake one over HTTP (stopped, slowed, failing);
the database is a private MariaDB that the test kills.
"""

import json

import pytest

from tests.faults.support import bounded
from tests.fxa_server import FakeAccountsServer
from tests.tokenserver.token_client import TokenApp, error_body, fxa_uid

UNAVAILABLE = error_body("error", description="Resource is not available")


@pytest.fixture
def make_app(sqlite_url, fxa):
    apps = []

    def make(url=sqlite_url, server=fxa, **overrides):
        app = TokenApp.build(url, server, **overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def assert_unavailable(app, response):
    assert response.status_int == 503
    assert response.json == UNAVAILABLE
    assert response.headers["Retry-After"] == "120"
    assert response.headers["X-Timestamp"].isdigit()


def test_start_up_asks_the_accounts_server_nothing(make_app, fxa):
    make_app()
    assert (fxa.jwks_fetches, fxa.verify_requests) == (0, 0)
    # Nor does an unreachable one stop the server from starting.
    make_app(tokenserver__oauth_server_url="http://127.0.0.1:9/v1")


def test_a_stopped_accounts_server_is_503_and_nothing_is_written(make_app, fxa):
    app = make_app(tokenserver__oauth_jwks_refetch_seconds="0")
    token = fxa.mint({"sub": fxa_uid("outage")})
    fxa.stop()
    response = app.token(access_token=token)
    assert_unavailable(app, response)
    assert app.row_counts() == (0, 0, 0)
    fxa.start()
    app.token(access_token=token, status=200)


def test_a_slow_accounts_server_is_503(make_app, fxa):
    app = make_app(tokenserver__oauth_timeout="1")
    fxa.delay = 3
    assert_unavailable(app, bounded(lambda: app.token(fxa_uid("slow"))))


@pytest.mark.parametrize("status", [500, 502, 503, 404])
def test_an_accounts_server_error_is_503(make_app, fxa, status):
    app = make_app()
    fxa.status = status
    assert_unavailable(app, app.token(fxa_uid("error")))


def test_cached_keys_keep_serving_through_an_outage(make_app, fxa):
    app = make_app()
    app.token(fxa_uid("cached"), status=200)
    fxa.stop()
    app.token(fxa_uid("cached"), status=200)
    app.token(fxa_uid("cached-newcomer"), status=200)


def test_a_rotated_key_is_fetched_and_a_retired_one_refused(make_app, fxa):
    app = make_app(tokenserver__oauth_jwks_refetch_seconds="0",
                   tokenserver__oauth_jwks_cache_seconds="0")
    old_key = fxa.active_key
    old_token = fxa.mint({"sub": fxa_uid("rotation"), "fxa-generation": 1000})
    app.token(access_token=old_token, status=200)
    fxa.add_key()
    app.token(fxa_uid("rotation"), status=200)  # signed by the new key: fetched again
    assert fxa.jwks_fetches == 2
    fxa.retire_key(old_key)
    response = app.token(access_token=old_token, status=401)
    assert response.json == error_body("invalid-credentials")


def test_opaque_tokens_are_asked_about_and_an_outage_there_is_503(make_app, fxa):
    app = make_app()
    account = fxa_uid("opaque")
    uid = app.token(access_token=fxa.mint_opaque(user=account, generation=1000),
                    status=200).json["uid"]
    assert app.token(account, status=200).json["uid"] == uid  # the same account as a JWT
    fxa.verify_answer = (500, {"code": 500})
    assert_unavailable(app, app.token(access_token=fxa.mint_opaque(user=account)))
    fxa.verify_answer = None
    unknown = app.token(access_token="ab" * 32, status=401)
    assert unknown.json == error_body("invalid-credentials")


def test_pinned_keys_need_no_accounts_server(sqlite_url):
    fxa = FakeAccountsServer()  # never started: nothing listens on its port
    app = TokenApp.build(sqlite_url, fxa, tokenserver__oauth_jwks=json.dumps(fxa.jwks()))
    try:
        app.token(fxa_uid("pinned"), status=200)
    finally:
        app.close()


@pytest.mark.mysql
def test_a_database_outage_is_503_with_a_crash_id_and_recovers(private_mysql_url,
                                                               private_mariadb, fxa):
    app = TokenApp.build(private_mysql_url, fxa, storage__connect_timeout="2",
                         storage__query_timeout="3", tokenserver__connect_timeout="2",
                         tokenserver__query_timeout="3")
    try:
        account = fxa_uid("database-down")
        uid = app.token(account, status=200).json["uid"]
        private_mariadb.kill()
        response = bounded(lambda: app.token(account))
        assert response.status_int == 503
        assert response.headers["Retry-After"] == "120"
        body = response.json
        assert body["status"] == "internal-error"
        assert body["errors"][0]["location"] == "internal"
        assert "crash id" in body["errors"][0]["description"]
        private_mariadb.start()
        assert bounded(lambda: app.token(account, status=200)).json["uid"] == uid
    finally:
        app.close()
