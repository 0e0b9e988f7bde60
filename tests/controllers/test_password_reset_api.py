"""User API password reset (reference §3.5, §3.8, §3.9) against a real SMTP server."""

import logging
import re
import time
import urllib.parse

import pytest
import sqlalchemy

from syncserver.accounts.reset_codes import reset_codes
from tests.controllers.conftest import register
from tests.services import free_port
from tests.support import basic_auth

LINK_RE = re.compile(r"(https?://\S+/weave-password-reset\?\S+)")


def smtp_settings(port, **extra):
    """Mail through the test SMTP server; links may name WebTest's host (``localhost``)."""
    return {"smtp.host": "127.0.0.1", "smtp.port": str(port),
            "smtp.sender": "Sync <sync@example.org>", "global.allowed_hosts": "localhost",
            **extra}


@pytest.fixture
def reset_app(make_test_app, smtp_server):
    return make_test_app(**smtp_settings(smtp_server.port))


def mailed_link(smtp_server, recipient):
    """The reset link of the last mail to ``recipient``, split into (url, username, key)."""
    mails = [mail for mail in smtp_server.mails() if mail["To"] == recipient]
    assert mails, f"no mail to {recipient}"
    text = mails[-1].get_content()
    url = LINK_RE.search(text).group(1)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return url, query["username"][0], query["key"][0]


def request_reset(app, smtp_server, account):
    assert app.get(f"/user/1.0/{account.username}/password_reset").text == "success"
    return mailed_link(smtp_server, account.email)[2]


def change_with_code(app, account, code, password="a new long password", status=200):
    return app.post(f"/user/1.0/{account.username}/password", password.encode(),
                    headers={"X-Weave-Password-Reset": code}, status=status)


def test_mail_carries_a_link_to_the_reset_page(reset_app, smtp_server):
    alice = register(reset_app, "alice@example.com")
    reset_app.get(f"/user/1.0/{alice.username}/password_reset")
    (mail,) = smtp_server.mails()
    assert mail["To"] == "alice@example.com"
    assert mail["From"] == "Sync <sync@example.org>"
    assert mail["Subject"] == "Resetting your Sync password"
    assert "6 hours" in mail.get_content()
    url, username, key = mailed_link(smtp_server, alice.email)
    assert url.startswith("http://localhost/weave-password-reset?")
    assert username == alice.username
    assert re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", key)


def test_code_sets_the_password_once(reset_app, smtp_server):
    alice = register(reset_app, "alice@example.com")
    code = request_reset(reset_app, smtp_server, alice)
    assert change_with_code(reset_app, alice, code).text == "success"
    reset_app.get(f"{alice.root}/info/collections", headers=alice.headers, status=401)
    reset_app.get(f"{alice.root}/info/collections",
                  headers=basic_auth(alice.username, "a new long password"))
    # The reference left the code usable after this path; here it is used up.
    assert change_with_code(reset_app, alice, code, "yet another password", status=400).json == 10


def test_wrong_code_is_refused_logged_and_leaves_the_real_one(reset_app, smtp_server, caplog):
    alice = register(reset_app, "alice@example.com")
    code = request_reset(reset_app, smtp_server, alice)
    wrong = "ZZZZ-ZZZZ-ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ-ZZZZ-ZZZZ" else "AAAA-AAAA-AAAA-AAAA"
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        assert change_with_code(reset_app, alice, wrong, status=400).json == 10
    records = [r for r in caplog.records if r.name == "syncserver.security"]
    assert any("InvalidResetCode" in r.getMessage() and alice.username in r.getMessage()
               for r in records)
    assert not any(wrong in r.getMessage() for r in records)
    reset_app.get(f"{alice.root}/info/collections", headers=alice.headers)
    assert change_with_code(reset_app, alice, code).text == "success"


def test_new_request_replaces_the_old_code(make_test_app, smtp_server):
    # No spacing between mails here (throttle.reset_mail_* are tested elsewhere).
    reset_app = make_test_app(**smtp_settings(
        smtp_server.port, **{"throttle.reset_mail_interval_seconds": "0"}))
    alice = register(reset_app, "alice@example.com")
    first = request_reset(reset_app, smtp_server, alice)
    second = request_reset(reset_app, smtp_server, alice)
    change_with_code(reset_app, alice, first, status=400)
    change_with_code(reset_app, alice, second)


def test_expired_code_is_refused(reset_app, smtp_server, sqlite_url):
    alice = register(reset_app, "alice@example.com")
    code = request_reset(reset_app, smtp_server, alice)
    engine = sqlalchemy.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(reset_codes.update().values(expires_at=reset_codes.c.expires_at - 21600))
    engine.dispose()
    assert change_with_code(reset_app, alice, code, status=400).json == 10
    reset_app.get(f"{alice.root}/info/collections", headers=alice.headers)


def test_lifetime_setting_reaches_the_mail_and_the_store(make_test_app, smtp_server, sqlite_url):
    app = make_test_app(**smtp_settings(smtp_server.port), **{"reset.code_lifetime_seconds": "900"})
    alice = register(app, "alice@example.com")
    request_reset(app, smtp_server, alice)
    assert "15 minutes" in smtp_server.mails()[-1].get_content()
    engine = sqlalchemy.create_engine(sqlite_url)
    with engine.connect() as connection:
        expires_at = connection.execute(sqlalchemy.select(reset_codes.c.expires_at)).scalar_one()
    engine.dispose()
    assert 800 < expires_at - time.time() <= 900


def test_delete_password_reset_clears_the_code(reset_app, smtp_server):
    alice = register(reset_app, "alice@example.com")
    code = request_reset(reset_app, smtp_server, alice)
    reset_app.delete(f"/user/1.0/{alice.username}/password_reset", status=401)
    assert reset_app.delete(f"/user/1.0/{alice.username}/password_reset",
                            headers=alice.headers).text == "success"
    change_with_code(reset_app, alice, code, status=400)


def test_weak_password_is_checked_before_the_code(reset_app, smtp_server):
    alice = register(reset_app, "alice@example.com")
    code = request_reset(reset_app, smtp_server, alice)
    response = change_with_code(reset_app, alice, code, "short", status=400)
    assert response.content_type == "text/plain"
    change_with_code(reset_app, alice, code)


def test_unknown_user_and_missing_address(reset_app, smtp_server):
    assert reset_app.get("/user/1.0/nobody/password_reset", status=400).json == 3
    reset_app.post("/user/1.0/nobody/password", b"a new long password",
                   headers={"X-Weave-Password-Reset": "AAAA-AAAA-AAAA-AAAA"}, status=404)
    alice = register(reset_app, "alice@example.com")
    reset_app.app.auth.set_email(alice.username, None)
    assert reset_app.get(f"/user/1.0/{alice.username}/password_reset", status=400).json == 12
    assert smtp_server.messages == []


def test_smtp_down_is_503_and_the_password_stays(make_test_app):
    app = make_test_app(**smtp_settings(free_port()))
    alice = register(app, "alice@example.com")
    response = app.get(f"/user/1.0/{alice.username}/password_reset", status=503)
    assert response.headers["Retry-After"] == "1800"
    app.get(f"{alice.root}/info/collections", headers=alice.headers)


def test_deleting_the_account_clears_its_code(reset_app, smtp_server):
    alice = register(reset_app, "alice@example.com")
    request_reset(reset_app, smtp_server, alice)
    user_id = reset_app.app.auth.get_user(alice.username).user_id
    assert reset_app.app.reset_codes.has_code(user_id)
    reset_app.delete(f"/user/1.0/{alice.username}", headers=alice.headers)
    assert not reset_app.app.reset_codes.has_code(user_id)


class CountingThrottle:
    """Refuses after ``limit`` failures per key: stands in for the real login throttle."""

    def __init__(self, limit):
        self.limit = limit
        self.failures = {}

    def check(self, key):
        return self.failures.get(key, 0) < self.limit

    def failure(self, key):
        self.failures[key] = self.failures.get(key, 0) + 1

    def success(self, key):
        self.failures.pop(key, None)


def test_throttle_hook_stops_code_guessing(reset_app, smtp_server):
    throttle = CountingThrottle(limit=2)
    reset_app.app.password_reset.throttle = throttle
    alice = register(reset_app, "alice@example.com")
    code = request_reset(reset_app, smtp_server, alice)
    for _ in range(2):
        change_with_code(reset_app, alice, "AAAA-AAAA-AAAA-AAAA", status=400)
    assert throttle.failures == {f"reset-code:{alice.username}": 2}
    # Even the right code waits now; the code itself is not used up.
    change_with_code(reset_app, alice, code, status=503)
    throttle.failures.clear()
    change_with_code(reset_app, alice, code)
    assert throttle.failures == {}
