"""Both APIs on a server whose accounts live in a real slapd (tests/auth/ldap_server.py)."""

import json

import pytest
import webtest

from syncserver.app import make_app
from tests.auth.ldap_server import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    ALICE,
    BOB_DISABLED,
    CAROL_SPECIAL,
    ENABLED_FILTER,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
)
from tests.support import basic_auth, sync_username

ITEM = {"id": "item1", "payload": "directory-authenticated"}


@pytest.fixture
def make_ldap_app(ldap_directory, sqlite_url):
    built = []

    def build(**overrides):
        settings = {
            "storage.sqluri": sqlite_url,
            "storage.create_tables": "true",
            "auth.backend": "ldap",
            "auth.ldapuri": ldap_directory.uri,
            "auth.bind_dn": SERVICE_DN,
            "auth.bind_password": SERVICE_PASSWORD,
            "auth.users_base_dn": PEOPLE_DN,
            "auth.enabled_filter": ENABLED_FILTER,
            "auth.ldap_timeout": "2",
            "global.retry_after": "120",
        }
        settings.update(overrides)
        wsgi_app = make_app({}, **settings)
        built.append(wsgi_app)
        return webtest.TestApp(wsgi_app)

    yield build
    for wsgi_app in built:
        wsgi_app.close()


@pytest.fixture
def app(make_ldap_app):
    return make_ldap_app()


@pytest.fixture
def writable_app(make_ldap_app):
    return make_ldap_app(**{"auth.admin_bind_dn": ADMIN_DN,
                            "auth.admin_bind_password": ADMIN_PASSWORD})


def test_storage_request_with_directory_credentials(app):
    headers = basic_auth(ALICE.uid, ALICE.password)
    app.put_json(f"/1.1/{ALICE.uid}/storage/bookmarks/item1", ITEM, headers=headers)
    response = app.get(f"/1.1/{ALICE.uid}/storage/bookmarks/item1", headers=headers)
    assert response.json["payload"] == "directory-authenticated"
    assert app.get(f"/1.1/{ALICE.uid}/info/collections", headers=headers).json.keys() == {
        "bookmarks"}


def test_special_characters_over_http(app):
    headers = basic_auth(CAROL_SPECIAL.uid, CAROL_SPECIAL.password)
    app.get(f"/1.1/{CAROL_SPECIAL.uid}/info/collections", headers=headers)


@pytest.mark.parametrize("username, password", [
    (ALICE.uid, "wrong password"),
    (BOB_DISABLED.uid, BOB_DISABLED.password),
    ("nobody", "some password"),
])
def test_refused_credentials_are_401(app, username, password):
    app.get(f"/1.1/{username}/info/collections", headers=basic_auth(username, password),
            status=401)


def test_directory_down_is_503_never_401_and_recovers(make_ldap_app, ldap_directory):
    app = make_ldap_app(**{"auth.credentials_cache_seconds": "0"})
    headers = basic_auth(ALICE.uid, ALICE.password)
    app.get(f"/1.1/{ALICE.uid}/info/collections", headers=headers)
    ldap_directory.stop()
    for password in (ALICE.password, "wrong password"):
        response = app.get(f"/1.1/{ALICE.uid}/info/collections",
                           headers=basic_auth(ALICE.uid, password), status=503)
        assert response.headers["Retry-After"] == "120"
    app.get("/__heartbeat__", status=503)
    ldap_directory.start()
    app.get(f"/1.1/{ALICE.uid}/info/collections", headers=headers)


def test_frozen_directory_is_503(make_ldap_app, ldap_directory):
    app = make_ldap_app(**{"auth.credentials_cache_seconds": "0", "auth.ldap_timeout": "1"})
    ldap_directory.freeze()
    try:
        app.get(f"/1.1/{ALICE.uid}/info/collections",
                headers=basic_auth(ALICE.uid, ALICE.password), status=503)
    finally:
        ldap_directory.thaw()


def test_user_lookups(app):
    assert app.get(f"/user/1.0/{ALICE.uid}").text == "1"
    assert app.get("/user/1.0/nobody").text == "0"
    assert app.get(f"/user/1.0/{ALICE.uid}/node/weave").text.startswith("http://")


def assert_managed_elsewhere(response):
    assert response.status_int == 403
    assert "directory" in json.loads(response.text)


def test_read_only_directory_answers_403_and_keeps_data(app):
    headers = basic_auth(ALICE.uid, ALICE.password)
    email = "newcomer@example.org"
    assert_managed_elsewhere(app.put_json(
        f"/user/1.0/{sync_username(email)}", {"email": email, "password": "a good password"},
        status=403))
    app.put_json(f"/1.1/{ALICE.uid}/storage/bookmarks/item1", ITEM, headers=headers)
    assert_managed_elsewhere(app.post(f"/user/1.0/{ALICE.uid}/password", "a new password",
                                      headers=headers, status=403))
    assert_managed_elsewhere(app.post(f"/user/1.0/{ALICE.uid}/email", "new@example.org",
                                      headers=headers, status=403))
    assert_managed_elsewhere(app.delete(f"/user/1.0/{ALICE.uid}", headers=headers, status=403))
    # Nothing changed: the old password works and the data is still there.
    app.get(f"/1.1/{ALICE.uid}/storage/bookmarks/item1", headers=headers)


def test_password_change_through_the_directory_requires_the_old_password(app):
    app.post(f"/user/1.0/{ALICE.uid}/password", "a new password",
             headers=basic_auth(ALICE.uid, "wrong password"), status=401)


def test_write_mode_through_the_user_api(writable_app):
    app = writable_app
    email = "newcomer-write@example.org"
    username = sync_username(email)
    app.put_json(f"/user/1.0/{username}", {"email": email, "password": "first password"})
    assert app.get(f"/user/1.0/{username}").text == "1"
    old = basic_auth(username, "first password")
    app.put_json(f"/1.1/{username}/storage/tabs/item1", ITEM, headers=old)

    app.post(f"/user/1.0/{username}/password", "second password ☃", headers=old)
    app.get(f"/1.1/{username}/info/collections", headers=old, status=401)
    new = basic_auth(username, "second password ☃")
    app.get(f"/1.1/{username}/storage/tabs/item1", headers=new)

    assert app.post(f"/user/1.0/{username}/email", "changed@example.org",
                    headers=new).text == "changed@example.org"
    assert app.delete(f"/user/1.0/{username}", headers=new).text == "1"
    app.get(f"/1.1/{username}/info/collections", headers=new, status=401)
    assert app.get(f"/user/1.0/{username}").text == "0"
