"""Reverse proxies: forwarded headers shape node URLs and client addresses only when trusted."""

import logging

import pytest
from webob import Request

from syncserver.settings import parse_networks, parse_settings
from syncserver.web.proxies import client_address
from syncserver.web.public_url import public_base_url
from tests.controllers.conftest import register

TRUSTED = parse_networks("test", "10.0.0.0/8 ::1")

PROXIED = {
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_HOST": "sync.example.org",
    "HTTP_X_FORWARDED_PREFIX": "/weave",
}


def global_settings(**raw):
    raw = {f"global.{key}": value for key, value in raw.items()}
    return parse_settings({"storage.sqluri": "sqlite:///x.db", **raw}).global_


def request(remote_addr="10.1.2.3", script_name="", **headers):
    environ = {"REMOTE_ADDR": remote_addr, "SCRIPT_NAME": script_name}
    environ.update(headers)
    return Request.blank(script_name + "/user/1.0/x/node/weave", environ,
                         base_url=f"http://backend:8000{script_name}")


@pytest.mark.parametrize("headers, expected", [
    ({}, "http://backend:8000/mount"),
    (PROXIED, "https://sync.example.org/weave/mount"),
    ({"HTTP_X_FORWARDED_PROTO": "https"}, "https://backend:8000/mount"),
    ({"HTTP_X_FORWARDED_HOST": "sync.example.org:8443"}, "http://sync.example.org:8443/mount"),
    ({"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "sync.example.org:443"},
     "https://sync.example.org/mount"),
    # Several proxies: the first (outermost) value counts.
    ({"HTTP_X_FORWARDED_PROTO": "https, http", "HTTP_X_FORWARDED_HOST": "a.example, b.example"},
     "https://a.example/mount"),
    # Values that cannot be part of a URL are ignored, not copied into it.
    ({"HTTP_X_FORWARDED_PROTO": "javascript", "HTTP_X_FORWARDED_HOST": "evil/path?",
      "HTTP_X_FORWARDED_PREFIX": "no-slash"}, "http://backend:8000/mount"),
])
def test_trusted_forwarded_headers_shape_the_public_url(headers, expected):
    settings = global_settings(trusted_proxies="10.0.0.0/8")
    assert public_base_url(request(script_name="/mount", **headers), settings) == expected


@pytest.mark.parametrize("trusted, remote_addr", [
    ("", "10.1.2.3"),                 # the default: no proxy is trusted
    ("10.0.0.0/8", "192.0.2.7"),      # a client talking to us directly
    ("10.0.0.0/8", "not an address"),
])
def test_forwarded_headers_are_ignored_from_untrusted_peers(trusted, remote_addr):
    settings = global_settings(trusted_proxies=trusted)
    assert public_base_url(request(remote_addr, "/mount", **PROXIED), settings) == (
        "http://backend:8000/mount")


def test_public_url_wins_verbatim():
    settings = global_settings(public_url="https://example.org/sync", trusted_proxies="10.0.0.0/8")
    assert public_base_url(request(script_name="/other", **PROXIED), settings) == (
        "https://example.org/sync")


@pytest.mark.parametrize("remote_addr, forwarded_for, expected", [
    ("192.0.2.7", "198.51.100.1", "192.0.2.7"),             # untrusted peer: header ignored
    ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
    ("10.0.0.1", "203.0.113.9, 198.51.100.1", "198.51.100.1"),  # the left part may be forged
    ("10.0.0.1", "198.51.100.1, 10.0.0.2", "198.51.100.1"),  # through two trusted proxies
    ("::1", "2001:db8::5", "2001:db8::5"),
    ("10.0.0.1", "", "10.0.0.1"),
    ("10.0.0.1", "garbage", "10.0.0.1"),
])
def test_client_address(remote_addr, forwarded_for, expected):
    environ = {"REMOTE_ADDR": remote_addr}
    if forwarded_for:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded_for
    assert client_address(environ, TRUSTED) == expected


def test_node_url_through_the_app(make_test_app):
    app = make_test_app(**{"global.trusted_proxies": "10.0.0.1"})
    alice = register(app, "alice@example.com")
    path = f"/user/1.0/{alice.username}/node/weave"
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sync.example.org"}
    trusted = app.get(path, headers=headers, extra_environ={"REMOTE_ADDR": "10.0.0.1"})
    assert trusted.text == "https://sync.example.org/"
    untrusted = app.get(path, headers=headers, extra_environ={"REMOTE_ADDR": "10.0.0.2"})
    assert untrusted.text == "http://localhost/"


def test_node_url_from_public_url(make_test_app):
    app = make_test_app(**{"global.public_url": "https://example.org/sync"})
    alice = register(app, "alice@example.com")
    assert app.get(f"/user/1.0/{alice.username}/node/weave").text == "https://example.org/sync/"


@pytest.mark.parametrize("peer, expected", [("10.0.0.1", "198.51.100.1"),
                                            ("192.0.2.7", "192.0.2.7")])
def test_security_log_believes_x_forwarded_for_only_from_a_trusted_proxy(
        make_test_app, caplog, peer, expected):
    app = make_test_app(**{"global.trusted_proxies": "10.0.0.1"})
    alice = register(app, "alice@example.com")
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        app.get(f"{alice.root}/info/collections", status=401,
                headers={"X-Forwarded-For": "198.51.100.1",
                         "Authorization": "Basic " + "eDp5"},
                extra_environ={"REMOTE_ADDR": peer})
    messages = [record.getMessage() for record in caplog.records
                if record.name == "syncserver.security"]
    assert messages and all(f"from {expected} " in message for message in messages), messages
