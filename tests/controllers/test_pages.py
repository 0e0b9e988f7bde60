"""The HTML pages: password reset and account deletion, through WebTest forms."""

import logging
import urllib.parse

import pytest

from tests.controllers.conftest import register
from tests.controllers.test_password_reset_api import mailed_link, smtp_settings
from tests.services import free_port
from tests.support import basic_auth

NEW_PASSWORD = "my brand new password"


@pytest.fixture
def reset_app(make_test_app, smtp_server):
    return make_test_app(**smtp_settings(smtp_server.port))


def follow(app, url):
    parts = urllib.parse.urlsplit(url)
    return app.get(parts.path + "?" + parts.query)


def request_link(app, smtp_server, typed, recipient):
    page = app.get("/weave-password-reset")
    page.form["username"] = typed
    page.form.submit()
    return mailed_link(smtp_server, recipient)


def test_pages_are_locked_down(reset_app):
    for path in ("/weave-password-reset", "/weave-password-reset?key=X&username=y",
                 "/weave-delete-account"):
        page = reset_app.get(path)
        assert page.content_type == "text/html"
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert "script-src" not in page.headers["Content-Security-Policy"]
        assert page.headers["Referrer-Policy"] == "same-origin"
        assert page.headers["Cache-Control"] == "no-store"
        assert page.form["csrf_token"].value
    fresh = reset_app.__class__(reset_app.app).get("/weave-password-reset")
    cookie = fresh.headers["Set-Cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie


def test_reset_by_e_mail_address_through_the_pages(reset_app, smtp_server):
    alice = register(reset_app, "alice@example.com")
    page = reset_app.get("/weave-password-reset")
    page.form["username"] = "Alice@Example.com"
    answer = page.form.submit()
    assert "If an account with that name exists" in answer.text
    url, _, key = mailed_link(smtp_server, alice.email)
    form = follow(reset_app, url).form
    assert (form["username"].value, form["key"].value) == (alice.username, key)
    form["password"] = form["confirm"] = NEW_PASSWORD
    done = form.submit()
    assert "Password successfully changed" in done.text
    reset_app.get(f"{alice.root}/info/collections", headers=alice.headers, status=401)
    reset_app.get(f"{alice.root}/info/collections", headers=basic_auth(alice.username, NEW_PASSWORD))
    # The link works once.
    form = follow(reset_app, url).form
    form["password"] = form["confirm"] = "and again another one"
    assert "does not work any more" in form.submit(status=400).text


def test_unknown_account_gets_the_same_answer_and_no_mail(reset_app, smtp_server):
    register(reset_app, "alice@example.com")
    page = reset_app.get("/weave-password-reset")
    page.form["username"] = "nobody@example.com"
    answer = page.form.submit()
    assert "If an account with that name exists" in answer.text
    page.form["username"] = "not a username!"
    assert "If an account with that name exists" in page.form.submit().text
    assert smtp_server.messages == []


def test_form_errors_keep_the_code(reset_app, smtp_server):
    alice = register(reset_app, "alice@example.com")
    url, _, _ = request_link(reset_app, smtp_server, alice.username, alice.email)
    form = follow(reset_app, url).form
    for password, confirm, message in (
            ("", "", "Please enter a new password"),
            (NEW_PASSWORD, NEW_PASSWORD + "x", "do not match"),
            ("short", "short", "at least 8 characters")):
        form["password"], form["confirm"] = password, confirm
        page = form.submit(status=400)
        assert message in page.text
        form = page.form
    form["password"] = form["confirm"] = NEW_PASSWORD
    assert "Password successfully changed" in form.submit().text


def test_wrong_key_is_refused_and_logged(reset_app, smtp_server, caplog):
    alice = register(reset_app, "alice@example.com")
    _, username, key = request_link(reset_app, smtp_server, alice.username, alice.email)
    form = reset_app.get(f"/weave-password-reset?username={username}&key=AAAA-BBBB-CCCC-DDDD").form
    form["password"] = form["confirm"] = NEW_PASSWORD
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        assert "does not work any more" in form.submit(status=400).text
    assert any("InvalidResetCode" in r.getMessage() for r in caplog.records)
    reset_app.get(f"{alice.root}/info/collections", headers=alice.headers)
    # A link for an account that does not exist reads exactly the same.
    form = reset_app.get(f"/weave-password-reset?username=nobody&key={key}").form
    form["password"] = form["confirm"] = NEW_PASSWORD
    assert "does not work any more" in form.submit(status=400).text


def test_query_values_are_escaped(reset_app):
    page = reset_app.get("/weave-password-reset?username=%22%3E%3Cscript%3Ex%3C/script%3E&key=k")
    assert "<script>" not in page.text
    assert "&#34;&gt;&lt;script&gt;" in page.text
    assert page.form["username"].value == '"><script>x</script>'


@pytest.mark.parametrize("attack", ["no token", "no cookie", "other cookie", "origin", "referer"])
def test_forged_posts_are_refused(reset_app, smtp_server, attack, caplog):
    alice = register(reset_app, "alice@example.com")
    form = reset_app.get("/weave-delete-account").form
    fields = {"csrf_token": form["csrf_token"].value, "username": alice.username,
              "password": alice.password, "confirm": "yes"}
    headers = {}
    if attack == "no token":
        del fields["csrf_token"]
    elif attack == "no cookie":
        reset_app.reset()
    elif attack == "other cookie":
        reset_app.set_cookie("syncserver_csrf", "planted-by-someone-else")
    elif attack == "origin":
        headers["Origin"] = "https://evil.example"
    elif attack == "referer":
        headers["Referer"] = "https://evil.example/page"
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        reset_app.post("/weave-delete-account", fields, headers=headers, status=403)
    assert any("CSRFRejected" in r.getMessage() for r in caplog.records)
    reset_app.get(f"{alice.root}/info/collections", headers=alice.headers)


def test_same_origin_post_is_accepted(reset_app):
    form = reset_app.get("/weave-password-reset").form
    form["username"] = "nobody"
    page = form.submit(headers={"Origin": "http://localhost", "Referer": "http://localhost/x"})
    assert "If an account" in page.text


def test_csrf_token_survives_several_processes(make_test_app, smtp_server):
    """Two app instances (two processes) with the same secret accept each other's forms."""
    settings = {**smtp_settings(smtp_server.port), "pages.csrf_secret": "s3cret"}
    first, second = make_test_app(**settings), make_test_app(**settings)
    form = first.get("/weave-password-reset").form
    second.cookiejar = first.cookiejar
    second.post("/weave-password-reset", {"csrf_token": form["csrf_token"].value,
                                          "username": "nobody"})
    other = make_test_app(**{**settings, "pages.csrf_secret": "another"})
    other.cookiejar = first.cookiejar
    other.post("/weave-password-reset", {"csrf_token": form["csrf_token"].value,
                                         "username": "nobody"}, status=403)


def test_not_configured_and_smtp_down(make_test_app):
    app = make_test_app()
    page = app.get("/weave-password-reset", status=503)
    assert "not set up" in page.text and page.headers["Retry-After"]
    app.post("/weave-password-reset", {"username": "x"}, status=503)
    down = make_test_app(**smtp_settings(free_port()))
    alice = register(down, "alice@example.com")
    form = down.get("/weave-password-reset").form
    form["username"] = alice.email
    page = form.submit(status=503)
    assert "try again" in page.text and page.headers["Retry-After"] == "1800"


def test_oversized_and_non_form_posts(reset_app):
    token = reset_app.get("/weave-password-reset").form["csrf_token"].value
    reset_app.post("/weave-password-reset", {"csrf_token": token, "username": "x" * 20000},
                   status=413)
    reset_app.post("/weave-password-reset", b'{"username": "x"}',
                   content_type="application/json", status=415)
    reset_app.post("/weave-password-reset", b"", content_type="application/x-www-form-urlencoded",
                   status=400)


def test_delete_account_page(reset_app, caplog):
    alice = register(reset_app, "alice@example.com")
    bob = register(reset_app, "bob@example.com")
    reset_app.put_json(f"{alice.root}/storage/bookmarks/a", {"payload": "mine"},
                       headers=alice.headers)
    reset_app.put_json(f"{bob.root}/storage/bookmarks/a", {"payload": "keep"}, headers=bob.headers)
    form = reset_app.get("/weave-delete-account").form
    form["username"] = "alice@example.com"
    form["password"] = "wrong password"
    form["confirm"] = True
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        page = form.submit(status=400)
    assert "Wrong user name or password" in page.text
    assert any("delete-account" in r.getMessage() for r in caplog.records)
    assert not any("wrong password" in r.getMessage() for r in caplog.records)
    form = page.form
    form["password"] = alice.password
    form["confirm"] = False
    assert "tick the box" in form.submit(status=400).text
    assert reset_app.get(f"/user/1.0/{alice.username}").text == "1"
    form["confirm"] = True
    page = form.submit()
    assert "have been deleted" in page.text
    assert reset_app.get(f"/user/1.0/{alice.username}").text == "0"
    alice = register(reset_app, "alice@example.com")
    assert reset_app.get(f"{alice.root}/info/collections", headers=alice.headers).json == {}
    assert reset_app.get(f"{bob.root}/storage/bookmarks/a", headers=bob.headers).json["payload"] == "keep"


def test_delete_account_page_works_without_smtp(app):
    alice = register(app, "alice@example.com")
    form = app.get("/weave-delete-account").form
    form["username"], form["password"], form["confirm"] = alice.username, alice.password, True
    assert "have been deleted" in form.submit().text
    assert app.get(f"/user/1.0/{alice.username}").text == "0"
