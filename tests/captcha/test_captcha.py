"""Captcha at registration and /misc/1.0/captcha_html, against a real local provider."""

import json
import logging

import pytest

from syncserver.captcha.hcaptcha import HCaptcha
from syncserver.captcha.recaptcha import ReCaptcha
from syncserver.errors import ConfigError
from syncserver.settings import parse_settings
from tests.captcha.conftest import GOOD_TOKEN, SECRET
from tests.services import free_port
from tests.support import sync_username

EMAIL = "dora@example.com"
DORA = sync_username(EMAIL)


def captcha_settings(verify_url, **extra):
    settings = {"captcha.use": "true", "captcha.public_key": "site-key",
                "captcha.private_key": SECRET, "captcha.verify_url": verify_url}
    settings.update(extra)
    return settings


def register(app, status=200, headers=None, client="198.51.100.4", **fields):
    body = {"email": EMAIL, "password": "a long password", **fields}
    return app.put(f"/user/1.0/{DORA}", json.dumps(body), headers=headers or {}, status=status,
                   extra_environ={"REMOTE_ADDR": client})


def exists(app):
    return app.get(f"/user/1.0/{DORA}").body == b"1"


def test_captcha_html_is_404_when_off(app):
    response = app.get("/misc/1.0/captcha_html", status=404)
    assert "No captcha configured" in response.text
    app.post("/misc/1.0/captcha_html", status=404)


def test_registration_needs_no_captcha_when_off(app):
    register(app)
    assert exists(app)


@pytest.mark.parametrize("method", ["get", "post"])
def test_captcha_html_shows_the_escaped_site_key(make_test_app, provider, method):
    app = make_test_app(**captcha_settings(provider.url, **{
        "captcha.public_key": 'key"><script>alert(1)</script>'}))
    response = getattr(app, method)("/misc/1.0/captcha_html")
    assert response.content_type == "text/html"
    assert 'data-sitekey="key&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in response.text
    assert "<script>alert(1)" not in response.text
    assert "https://www.google.com/recaptcha/api.js" in response.text
    assert 'id="recaptcha_response_field"' in response.text
    assert app.get("/misc/1/captcha_html/").text == response.text


def test_good_answer_registers(make_test_app, provider):
    app = make_test_app(**captcha_settings(provider.url))
    # The client's own address, not one it claims in X-Forwarded-For (no proxy is trusted).
    assert register(app, **{"captcha-challenge": "x", "captcha-response": GOOD_TOKEN},
                    headers={"X-Forwarded-For": "203.0.113.9"}).text == DORA
    assert exists(app)
    assert provider.forms == [
        {"secret": SECRET, "response": GOOD_TOKEN, "remoteip": "198.51.100.4"}]


def test_token_alone_is_enough(make_test_app, provider):
    app = make_test_app(**captcha_settings(provider.url))
    register(app, **{"captcha-response": GOOD_TOKEN})
    assert exists(app)


def test_wrong_answer_is_code_2(make_test_app, provider, caplog):
    app = make_test_app(**captcha_settings(provider.url))
    with caplog.at_level(logging.INFO, logger="syncserver.security"):
        response = register(app, status=400, **{"captcha-challenge": "x",
                                                 "captcha-response": "wrong"})
    assert response.body == b"2" and response.content_type == "application/json"
    assert not exists(app)
    assert len(provider.forms) == 1
    assert any("CaptchaFail: wrong captcha answer" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fields", [{}, {"captcha-challenge": "x"}, {"captcha-response": ""},
                                    {"captcha-response": 5}, {"captcha-response": ["t"]},
                                    {"captcha-response": GOOD_TOKEN, "captcha-challenge": 3}])
def test_missing_answer_is_code_2_without_asking_the_provider(make_test_app, provider, fields):
    app = make_test_app(**captcha_settings(provider.url))
    assert register(app, status=400, **fields).body == b"2"
    assert not exists(app)
    assert provider.forms == []


def test_earlier_checks_come_first(make_test_app, provider):
    app = make_test_app(**captcha_settings(provider.url))
    assert register(app, status=400, password="short").body == b"9"
    assert provider.forms == []


def test_shared_secret_bypasses_the_captcha(make_test_app, provider):
    app = make_test_app(**captcha_settings(provider.url, **{"global.shared_secret": "letmein"}))
    assert register(app, status=400, headers={"X-Weave-Secret": "letmeout"}).body == b"2"
    register(app, headers={"X-Weave-Secret": "letmein"})
    assert exists(app)
    assert provider.forms == []


def test_no_shared_secret_configured_means_no_bypass(make_test_app, provider):
    app = make_test_app(**captcha_settings(provider.url))
    assert register(app, status=400, headers={"X-Weave-Secret": ""}).body == b"2"


def test_provider_down_is_503(make_test_app):
    app = make_test_app(**captcha_settings(f"http://127.0.0.1:{free_port()}/siteverify",
                                           **{"global.retry_after": "90"}))
    response = register(app, status=503, **{"captcha-response": GOOD_TOKEN})
    assert response.headers["Retry-After"] == "90"
    assert SECRET not in response.text
    assert not exists(app)


@pytest.mark.parametrize("status,body", [(500, b"oops"), (200, b"not json"),
                                         (200, b'{"nothing": 1}'), (200, b'{"success": "yes"}')])
def test_provider_nonsense_is_503(make_test_app, provider, status, body):
    provider.status, provider.raw_body = status, body
    app = make_test_app(**captcha_settings(provider.url))
    register(app, status=503, **{"captcha-response": GOOD_TOKEN})
    assert not exists(app)


def test_https_provider_with_its_ca(make_test_app, tls_provider, certificate):
    app = make_test_app(**captcha_settings(tls_provider.url,
                                           **{"captcha.ca_file": str(certificate[0])}))
    register(app, **{"captcha-response": GOOD_TOKEN})
    assert exists(app)


def test_https_certificates_are_verified_by_default(make_test_app, tls_provider):
    app = make_test_app(**captcha_settings(tls_provider.url))
    register(app, status=503, **{"captcha-response": GOOD_TOKEN})
    assert tls_provider.forms == []
    assert not exists(app)


def test_hcaptcha_alias(make_test_app, provider):
    app = make_test_app(**captcha_settings(provider.url, **{"captcha.backend": "hcaptcha"}))
    assert 'class="h-captcha"' in app.get("/misc/1.0/captcha_html").text
    register(app, **{"captcha-response": GOOD_TOKEN})
    assert exists(app)


def test_backends_default_to_the_real_endpoints():
    assert ReCaptcha("a", "b").verify_url == "https://www.google.com/recaptcha/api/siteverify"
    assert HCaptcha("a", "b").verify_url == "https://api.hcaptcha.com/siteverify"


@pytest.mark.parametrize("settings,message", [
    ({"captcha.use": "true", "captcha.private_key": "x"}, "captcha.public_key is required"),
    ({"captcha.use": "true", "captcha.public_key": "x"}, "captcha.private_key is required"),
    ({"captcha.use": "true", "captcha.public_key": "x", "captcha.private_key": "y",
      "captcha.verify_url": "ftp://example.org/"}, "captcha.verify_url"),
    ({"captcha.use": "true", "captcha.public_key": "x", "captcha.private_key": "y",
      "captcha.ca_file": "/nonexistent.pem"}, "captcha.ca_file"),
])
def test_configuration_errors_name_the_key(settings, message):
    parsed = parse_settings(settings)
    with pytest.raises(ConfigError, match=message):
        parsed.captcha.backend.from_settings(parsed.captcha)


def test_captcha_backend_must_implement_the_interface():
    with pytest.raises(ConfigError, match=r"captcha\.backend"):
        parse_settings({"captcha.backend": "syncserver.settings.Settings"})


def test_private_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEST_CAPTCHA_SECRET", "from-env")
    parsed = parse_settings({"captcha.private_key": "${TEST_CAPTCHA_SECRET}"})
    assert parsed.captcha.private_key == "from-env"
