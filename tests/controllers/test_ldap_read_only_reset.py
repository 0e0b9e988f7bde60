"""Password reset and account deletion against a read-only directory (real slapd, real SMTP).

Passwords and accounts belong to the directory: every reset step and the
delete-account page say so (403), no mail goes out and no data is deleted.
"""

import json

import pytest

from syncserver.controllers.user import MANAGED_ELSEWHERE_MESSAGE
from tests.auth.ldap_server import ADMIN_DN, ADMIN_PASSWORD, ALICE
from tests.controllers.test_ldap_user_api import make_ldap_app  # noqa: F401 (fixture)
from tests.controllers.test_password_reset_api import smtp_settings
from tests.support import basic_auth

SHARED = {"pages.csrf_secret": "the same for both apps"}


@pytest.fixture
def read_only(make_ldap_app, smtp_server):  # noqa: F811
    return make_ldap_app(**smtp_settings(smtp_server.port), **SHARED)


def test_api_reset_steps_are_403_and_send_no_mail(read_only, smtp_server):
    response = read_only.get(f"/user/1.0/{ALICE.uid}/password_reset", status=403)
    assert response.content_type == "application/json"
    assert json.loads(response.body) == MANAGED_ELSEWHERE_MESSAGE
    changed = read_only.post(f"/user/1.0/{ALICE.uid}/password", b"a new long password",
                             headers={"X-Weave-Password-Reset": "AAAA-BBBB-CCCC-DDDD"},
                             status=403)
    assert json.loads(changed.body) == MANAGED_ELSEWHERE_MESSAGE
    assert smtp_server.messages == []
    # The directory password still works.
    read_only.get(f"/1.1/{ALICE.uid}/info/collections",
                  headers=basic_auth(ALICE.uid, ALICE.password))


def test_reset_page_explains_and_sends_no_mail(read_only, smtp_server):
    for path in ("/weave-password-reset", f"/weave-password-reset?username={ALICE.uid}&key=K"):
        page = read_only.get(path, status=403)
        assert "managed by the company directory" in page.text
        assert "<form" not in page.text
    posted = read_only.post("/weave-password-reset", {"username": ALICE.uid}, status=403)
    assert "managed by the company directory" in posted.text
    assert smtp_server.messages == []


def test_delete_account_page_deletes_nothing(make_ldap_app, read_only):  # noqa: F811
    headers = basic_auth(ALICE.uid, ALICE.password)
    item = f"/1.1/{ALICE.uid}/storage/bookmarks/kept"
    read_only.put_json(item, {"id": "kept", "payload": "precious"}, headers=headers)
    assert "managed by the company directory" in read_only.get(
        "/weave-delete-account", status=403).text

    # A genuine form (token and cookie from a writable twin with the same CSRF secret),
    # with the right password: still nothing is deleted.
    writable = make_ldap_app(**{"auth.admin_bind_dn": ADMIN_DN,
                                "auth.admin_bind_password": ADMIN_PASSWORD}, **SHARED)
    form = writable.get("/weave-delete-account").form
    read_only.cookiejar = writable.cookiejar
    page = read_only.post("/weave-delete-account", {
        "csrf_token": form["csrf_token"].value, "username": ALICE.uid,
        "password": ALICE.password, "confirm": "yes"}, status=403)
    assert "Nothing was deleted" in page.text
    assert read_only.get(item, headers=headers).json["payload"] == "precious"
