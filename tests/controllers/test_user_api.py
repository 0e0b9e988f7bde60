"""User API 1.0 through the WSGI app: validation order, codes and side effects."""

import json

import pytest

from tests.controllers.conftest import register
from tests.support import basic_auth, sync_username

EMAIL = "carol@example.com"
CAROL = sync_username(EMAIL)


def create(app, username=CAROL, status=200, headers=None, **body):
    body.setdefault("email", EMAIL)
    body.setdefault("password", "a long password")
    return app.put(f"/user/1.0/{username}", json.dumps(body), headers=headers or {}, status=status)


def test_username_is_the_hash_of_the_email():
    assert sync_username("test@test.com") == "u2wqblarhim5su7pxemcbwdyryrghmuk"


def test_create_and_exists(app):
    response = app.get(f"/user/1.0/{CAROL}")
    assert response.body == b"0" and response.content_type == "text/plain"
    response = create(app)
    assert response.text == CAROL
    assert app.get(f"/user/1.0/{CAROL}").body == b"1"
    assert app.get(f"/user/1/{CAROL}/").body == b"1"
    assert "X-Weave-Timestamp" in response.headers


@pytest.mark.parametrize("body,code", [
    ("not json", b"6"), ("[1]", b"6"), ("\"x\"", b"6"),
    (json.dumps({"password": "a long password"}), b"12"),
    (json.dumps({"password": "a long password", "email": "carol@moz"}), b"12"),
    (json.dumps({"password": "a long password", "email": "other@example.com"}), b"15"),
    (json.dumps({"email": EMAIL}), b"7"),
    (json.dumps({"email": EMAIL, "password": ""}), b"7"),
    (json.dumps({"email": EMAIL, "password": "short"}), b"9"),
    (json.dumps({"email": EMAIL, "password": CAROL.upper()}), b"9"),
])
def test_create_validation(app, body, code):
    response = app.put(f"/user/1.0/{CAROL}", body, status=400)
    assert response.body == code and response.content_type == "application/json"
    assert app.get(f"/user/1.0/{CAROL}").body == b"0"


def test_existing_user_is_4_before_anything_else(app):
    create(app)
    assert app.put(f"/user/1.0/{CAROL}", "not json", status=400).body == b"4"


def test_too_long_username_is_3(app):
    assert create(app, username="a" * 33, status=400).body == b"3"


def test_non_strict_usernames(make_test_app):
    app = make_test_app(**{"auth.strict_usernames": "false"})
    assert create(app, username="plainname").text == "plainname"


def test_registration_can_be_closed(make_test_app):
    app = make_test_app(**{"auth.allow_new_users": "false", "global.retry_after": "120"})
    response = create(app, status=503)
    assert response.headers["Retry-After"] == "120"
    assert app.get(f"/user/1.0/{CAROL}").body == b"0"


def test_node_is_the_server_as_reached(app):
    app.get(f"/user/1.0/{CAROL}/node/weave", status=404)
    create(app)
    assert app.get(f"/user/1.0/{CAROL}/node/weave").text == "http://localhost/"
    response = app.get(f"/user/1.0/{CAROL}/node/weave",
                       extra_environ={"HTTP_HOST": "sync.example.org:8443", "wsgi.url_scheme": "https",
                                      "SCRIPT_NAME": "/sync"})
    assert response.text == "https://sync.example.org:8443/sync/"


def test_configured_node(make_test_app):
    app = make_test_app(**{"nodes.fallback_node": "https://node1.example.org"})
    create(app)
    assert app.get(f"/user/1.0/{CAROL}/node/weave").text == "https://node1.example.org/"


def test_change_password(app):
    create(app)
    old = basic_auth(CAROL, "a long password")
    app.get(f"/1.1/{CAROL}/info/collections", headers=old)
    response = app.post(f"/user/1.0/{CAROL}/password", b"a new long password", headers=old)
    assert response.text == "success"
    app.get(f"/1.1/{CAROL}/info/collections", headers=old, status=401)
    app.get(f"/1.1/{CAROL}/info/collections", headers=basic_auth(CAROL, "a new long password"))


def test_change_password_rules(app):
    create(app)
    auth = basic_auth(CAROL, "a long password")
    response = app.post(f"/user/1.0/{CAROL}/password", b"short", headers=auth, status=400)
    assert "at least 8 characters" in response.text
    app.post(f"/user/1.0/{CAROL}/password", b"another password", status=401)
    app.post(f"/user/1.0/{CAROL}/password", b"another password",
             headers=basic_auth(CAROL, "wrong password"), status=401)


@pytest.mark.parametrize("password", ["with:colon", "ünïcødé ☃ α", " spaces ", "tab\tand\nnewline",
                                      ":leading", "trailing:", "@!=@!=@!="])
def test_unusual_passwords(app, password):
    create(app, password=password)
    app.get(f"/1.1/{CAROL}/info/collections", headers=basic_auth(CAROL, password))
    app.get(f"/1.1/{CAROL}/info/collections", headers=basic_auth(CAROL, password + "x"), status=401)


def test_change_email(app):
    create(app)
    auth = basic_auth(CAROL, "a long password")
    assert app.post(f"/user/1.0/{CAROL}/email", b"new@example.org", headers=auth).text == (
        "new@example.org")
    assert app.post(f"/user/1.0/{CAROL}/email", b"broken@", headers=auth, status=400).body == b"12"
    app.post(f"/user/1.0/{CAROL}/email", b"new@example.org", status=401)


def test_delete_user_deletes_data(app):
    account = register(app, EMAIL, "a long password")
    app.put(f"{account.root}/storage/bookmarks/a", '{"payload": "x"}', headers=account.headers)
    other = register(app, "dave@example.com")
    app.put(f"{other.root}/storage/bookmarks/a", '{"payload": "keep"}', headers=other.headers)

    app.delete(f"/user/1.0/{CAROL}", status=401)
    assert app.delete(f"/user/1.0/{CAROL}", headers=account.headers).text == "1"
    assert app.get(f"/user/1.0/{CAROL}").body == b"0"
    app.get(f"{account.root}/info/collections", headers=account.headers, status=401)
    # Re-registering the name starts from nothing; other users keep their data.
    account = register(app, EMAIL, "a long password")
    assert app.get(f"{account.root}/info/collections", headers=account.headers).json == {}
    assert app.get(f"{other.root}/storage/bookmarks/a", headers=other.headers).json["payload"] == "keep"


def test_password_reset_is_not_configured(app):
    create(app)
    response = app.get(f"/user/1.0/{CAROL}/password_reset", status=503)
    assert "Retry-After" in response.headers
    app.post(f"/user/1.0/{CAROL}/password", b"a brand new password",
             headers={"X-Weave-Password-Reset": "AAAA-BBBB-CCCC-DDDD"}, status=503)


def test_disabled_account_is_401(app):
    create(app)
    auth = basic_auth(CAROL, "a long password")
    app.app.auth.set_enabled(CAROL, False)
    app.get(f"/1.1/{CAROL}/info/collections", headers=auth, status=401)
    app.app.auth.set_enabled(CAROL, True)
    app.get(f"/1.1/{CAROL}/info/collections", headers=auth)


def test_web_server_authentication_is_refused(app):
    create(app)
    response = app.get(f"/1.1/{CAROL}/info/collections", extra_environ={"REMOTE_USER": "x"},
                       headers=basic_auth(CAROL, "a long password"), status=500)
    assert "WSGIPassAuthorization" in response.text
