"""Captcha on GET password_reset (reference §3.8 step 4: query parameters), with the bypass."""

import pytest

from tests.captcha.conftest import GOOD_TOKEN
from tests.captcha.test_captcha import captcha_settings
from tests.controllers.test_password_reset_api import smtp_settings
from tests.support import sync_username

EMAIL = "alice@example.com"
USERNAME = sync_username(EMAIL)


@pytest.fixture
def captcha_app(make_test_app, provider, smtp_server):
    app = make_test_app(**captcha_settings(provider.url, **smtp_settings(
        smtp_server.port, **{"global.shared_secret": "letmein",
                             "throttle.reset_mail_interval_seconds": "0"})))
    app.put_json(f"/user/1.0/{USERNAME}", {"email": EMAIL, "password": "correct horse battery"},
                 headers={"X-Weave-Secret": "letmein"})
    return app


@pytest.mark.parametrize("query", ["", "?captcha-challenge=x",
                                   "?captcha-challenge=x&captcha-response=wrong"])
def test_missing_or_wrong_captcha_is_code_2_and_sends_nothing(captcha_app, smtp_server, query):
    response = captcha_app.get(f"/user/1.0/{USERNAME}/password_reset{query}", status=400)
    assert response.json == 2
    assert smtp_server.messages == []


def test_right_captcha_or_shared_secret_sends_the_link(captcha_app, smtp_server, provider):
    url = f"/user/1.0/{USERNAME}/password_reset"
    assert captcha_app.get(f"{url}?captcha-challenge=x&captcha-response={GOOD_TOKEN}").text == (
        "success")
    assert provider.forms[-1]["response"] == GOOD_TOKEN
    assert captcha_app.get(url, headers={"X-Weave-Secret": "letmein"}).text == "success"
    assert captcha_app.get(url, headers={"X-Weave-Secret": "wrong"}, status=400).json == 2
    assert len(smtp_server.messages) == 2


def test_unknown_user_is_code_3_before_the_captcha(captcha_app, provider):
    asked = len(provider.forms)
    assert captcha_app.get("/user/1.0/nobody/password_reset", status=400).json == 3
    assert len(provider.forms) == asked


def test_a_captcha_answer_that_is_not_utf8_is_a_400(captcha_app, smtp_server):
    response = captcha_app.get(
        f"/user/1.0/{USERNAME}/password_reset?captcha-challenge=x&captcha-response=%ff",
        status=400)
    assert "UTF-8" in response.text
    assert smtp_server.messages == []
