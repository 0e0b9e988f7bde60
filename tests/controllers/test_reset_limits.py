"""Reset links: mails to one account are spaced and counted per hour (shared throttle)."""

import logging

from tests.controllers.conftest import register
from tests.controllers.test_password_reset_api import smtp_settings


def reset_url(account):
    return f"/user/1.0/{account.username}/password_reset"


def test_second_request_within_the_interval_is_refused_with_retry_after(
        make_test_app, smtp_server, caplog):
    app = make_test_app(**smtp_settings(smtp_server.port))
    alice = register(app, "alice@example.com")
    bob = register(app, "bob@example.com")
    assert app.get(reset_url(alice)).text == "success"
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        refused = app.get(reset_url(alice), status=503)
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "sent recently" in refused.json
    assert any("PasswordResetThrottled" in r.getMessage() for r in caplog.records)
    # Another account is not affected; only the first mail to alice went out.
    assert app.get(reset_url(bob)).text == "success"
    assert [mail["To"] for mail in smtp_server.mails()] == [alice.email, bob.email]


def test_hourly_limit(make_test_app, smtp_server):
    app = make_test_app(**smtp_settings(smtp_server.port, **{
        "throttle.reset_mail_interval_seconds": "0", "throttle.reset_mail_max_per_hour": "2"}))
    alice = register(app, "alice@example.com")
    app.get(reset_url(alice))
    app.get(reset_url(alice))
    refused = app.get(reset_url(alice), status=503)
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    assert len(smtp_server.messages) == 2


def test_the_page_answers_the_same_neutral_message_and_sends_nothing(make_test_app,
                                                                     smtp_server):
    app = make_test_app(**smtp_settings(smtp_server.port))
    alice = register(app, "alice@example.com")
    pages = []
    for _ in range(2):
        form = app.get("/weave-password-reset").form
        form["username"] = alice.email
        pages.append(form.submit())
    assert pages[0].status_int == pages[1].status_int == 200
    assert "If an account with that name exists" in pages[1].text
    assert len(smtp_server.messages) == 1


def test_no_limit_when_throttling_is_off(make_test_app, smtp_server):
    app = make_test_app(**smtp_settings(smtp_server.port, **{"throttle.enabled": "false"}))
    alice = register(app, "alice@example.com")
    for _ in range(3):
        app.get(reset_url(alice))
    assert len(smtp_server.messages) == 3
