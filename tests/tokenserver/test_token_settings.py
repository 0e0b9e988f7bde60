"""``tokenserver.*``: defaults, the database it shares with the node list, bad values, the secret."""

import pytest
import webtest

from syncserver.app import build_app
from syncserver.errors import ConfigError
from syncserver.settings import parse_settings
from syncserver.settings.generated_secret import with_master_secret
from syncserver.tokenserver.fxa_client import DEFAULT_SERVER_URL
from syncserver.web.tokenserver_http import is_tokenserver_path


def settings(**raw):
    raw.setdefault("storage.sqluri", "sqlite:///x.db")
    return parse_settings({key.replace("__", "."): value for key, value in raw.items()})


def test_defaults():
    tokenserver = settings().tokenserver
    assert tokenserver.enabled is False
    assert tokenserver.oauth_server_url == DEFAULT_SERVER_URL
    assert tokenserver.oauth_server_url == "https://oauth.accounts.firefox.com/v1"
    assert tokenserver.allow_new_users is True
    assert tokenserver.allowed_fxa_uids == () and tokenserver.max_users == 0
    assert tokenserver.duration == 3600
    assert tokenserver.sqluri == "sqlite:///x.db"  # storage -> auth -> nodes -> tokenserver
    oauth = tokenserver.oauth_settings()
    assert (oauth.server_url, oauth.jwks, oauth.timeout, oauth.jwks_cache_seconds) == (
        DEFAULT_SERVER_URL, None, 5.0, 3600.0)


def test_every_key_is_read():
    tokenserver = settings(
        tokenserver__enabled="true", tokenserver__oauth_server_url="https://fxa.example.org",
        tokenserver__oauth_jwks_cache_seconds="60", tokenserver__oauth_jwks_refetch_seconds="5",
        tokenserver__oauth_timeout="2.5", tokenserver__oauth_leeway_seconds="1",
        tokenserver__oauth_issuer="https://accounts.example.org",
        tokenserver__oauth_remote_verify="false", tokenserver__allow_new_users="false",
        tokenserver__allowed_fxa_uids="a1b2, c3d4 e5f6", tokenserver__max_users="10",
        tokenserver__duration="300", tokenserver__node_url="sync.example.org/sync/",
        tokenserver__node_type="spanner", tokenserver__metrics_secret="m",
        tokenserver__pool_size="3").tokenserver
    assert tokenserver.allowed_fxa_uids == ("a1b2", "c3d4", "e5f6")
    assert tokenserver.node_url == "https://sync.example.org/sync"
    assert (tokenserver.max_users, tokenserver.duration, tokenserver.node_type) == (
        10, 300, "spanner")
    oauth = tokenserver.oauth_settings()
    assert (oauth.server_url, oauth.jwks_cache_seconds, oauth.jwks_refetch_seconds,
            oauth.timeout, oauth.leeway_seconds, oauth.issuer, oauth.remote_verify) == (
        "https://fxa.example.org", 60.0, 5.0, 2.5, 1.0, "https://accounts.example.org", False)


def test_the_users_live_with_the_node_list():
    assert settings(nodes__sqluri="sqlite:///nodes.db").tokenserver.sqluri == "sqlite:///nodes.db"
    both = settings(tokenserver__sqluri="sqlite:///tokens.db")
    assert both.tokenserver.sqluri == both.nodes.sqluri == "sqlite:///tokens.db"
    assert settings(nodes__sqluri="sqlite:///a.db",
                    tokenserver__sqluri="sqlite:///a.db").tokenserver.sqluri == "sqlite:///a.db"
    with pytest.raises(ConfigError, match=r"tokenserver\.sqluri and nodes\.sqluri"):
        settings(nodes__sqluri="sqlite:///a.db", tokenserver__sqluri="sqlite:///b.db")


@pytest.mark.parametrize("key,value,words", [
    ("duration", "0", "tokenserver.duration"),
    ("allowed_fxa_uids", "alice@example.org", "e-mail"),
    ("node_url", "ftp://sync.example.org", "tokenserver.node_url"),
    ("node_type", "my type!", "tokenserver.node_type"),
    ("oauth_timeout", "0", "tokenserver.oauth_timeout"),
    ("oauth_server_url", "ftp://fxa.example.org", "tokenserver.oauth_server_url"),
    ("max_users", "-1", "tokenserver.max_users"),
    ("enabled", "perhaps", "tokenserver.enabled"),
    ("no_such_key", "1", "tokenserver.no_such_key"),
])
def test_bad_values_stop_start_up_with_a_sentence(key, value, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        settings(**{f"tokenserver__{key}": value})


def test_a_bad_pinned_jwks_stops_start_up(sqlite_url):
    with pytest.raises(ConfigError, match=r"tokenserver\.oauth_jwks"):
        build_app({"storage.sqluri": sqlite_url, "tokenserver.enabled": "true",
                   "storage.create_tables": "true", "global.master_secret": "x" * 40,
                   "tokenserver.oauth_jwks": '{"keys": []}'})


def test_the_master_secret_is_generated_for_the_tokenserver(tmp_path):
    parsed = settings(tokenserver__enabled="true")
    with pytest.raises(ConfigError, match=r"tokenserver\.enabled"):
        with_master_secret(parsed, None)
    first = with_master_secret(parsed, str(tmp_path)).global_.master_secret
    assert len(first) == 1 and len(first[0]) >= 32
    assert with_master_secret(parsed, str(tmp_path)).global_.master_secret == first
    assert with_master_secret(settings(), str(tmp_path)).global_.master_secret == ()


def test_switched_off_the_paths_answer_the_tokenservers_404(sqlite_url):
    app = build_app({"storage.sqluri": sqlite_url, "storage.create_tables": "true"})
    try:
        response = webtest.TestApp(app).get("/1.0/sync/1.5", expect_errors=True)
        assert response.status_int == 404
        assert response.json["status"] == "error"
        assert response.headers["X-Timestamp"].isdigit()
        assert app.components.token_users is None
    finally:
        app.close()


@pytest.mark.parametrize("path,expected", [
    ("/1.0/sync/1.5", True), ("/1.0/sync/1.5/", True), ("/token/1.0/sync/1.5", True),
    ("/token", True), ("/token/x/y/z", True), ("/1.0/sync", True), ("/1.0/sync/abc", True),
    ("/1.0/foo/1.5", True), ("/1.0/foo/2", True),
    ("/1.0/sync/storage", False), ("/1.0/alice/storage", False),
    ("/1.0/alice/info/collections", False), ("/1.1/sync/1.5", False), ("/1.5/12/info", False),
    ("/tokens", False), ("/user/1.0/sync", False), ("/", False),
])
def test_which_paths_are_the_tokenservers(path, expected):
    assert is_tokenserver_path(path) is expected
