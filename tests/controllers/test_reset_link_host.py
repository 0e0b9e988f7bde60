"""Reset links never follow an unauthenticated request's Host (issue 12, item 1).

Every test talks to the real SMTP server of the session: a refused attempt is
one that delivered no mail at all, an accepted one a mail whose link names
only the configured address.
"""

import logging

import pytest

from tests.controllers.conftest import register
from tests.controllers.test_password_reset_api import LINK_RE, mailed_link

EVIL = "evil.example"


def mail_settings(port, **extra):
    """SMTP on, and neither global.public_url nor global.allowed_hosts unless given."""
    return {"smtp.host": "127.0.0.1", "smtp.port": str(port),
            "smtp.sender": "Sync <sync@example.org>",
            "throttle.reset_mail_interval_seconds": "0", **extra}


def ask_for_link(app, account, host, status=200, **environ):
    return app.get(f"/user/1.0/{account.username}/password_reset", status=status,
                   extra_environ={"HTTP_HOST": host, **environ})


def mailed_links(smtp_server):
    return [LINK_RE.search(mail.get_content()).group(1) for mail in smtp_server.mails()]


def test_without_public_url_a_foreign_host_gets_no_mail(make_test_app, smtp_server, caplog):
    app = make_test_app(**mail_settings(smtp_server.port))
    alice = register(app, "alice@example.com")
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        answer = ask_for_link(app, alice, EVIL, status=503)
    assert "global.public_url" in answer.json
    assert answer.headers["Retry-After"]
    assert smtp_server.messages == []
    assert any("MailLinkRefused" in record.getMessage() and EVIL in record.getMessage()
               for record in caplog.records)
    # Not the server's own name either: nothing vouches for any Host.
    ask_for_link(app, alice, "localhost", status=503)
    assert smtp_server.messages == []


def test_a_configured_public_url_is_used_verbatim(make_test_app, smtp_server):
    app = make_test_app(**mail_settings(
        smtp_server.port, **{"global.public_url": "https://sync.example.org/prefix/"}))
    alice = register(app, "alice@example.com")
    for host in (EVIL, "localhost"):
        assert ask_for_link(app, alice, host).text == "success"
    links = mailed_links(smtp_server)
    assert len(links) == 2
    assert all(link.startswith("https://sync.example.org/prefix/weave-password-reset?username=")
               for link in links), links
    # Trusted or not, forwarded headers do not change a configured URL either.
    app = make_test_app(**mail_settings(
        smtp_server.port, **{"global.public_url": "https://sync.example.org/",
                             "global.trusted_proxies": "10.0.0.1"}))
    bob = register(app, "bob@example.com")
    app.get(f"/user/1.0/{bob.username}/password_reset",
            headers={"X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "http"},
            extra_environ={"REMOTE_ADDR": "10.0.0.1"})
    url, _, _ = mailed_link(smtp_server, bob.email)
    assert url.startswith("https://sync.example.org/weave-password-reset?")


def test_allowed_hosts_admit_their_names_only(make_test_app, smtp_server):
    app = make_test_app(**mail_settings(
        smtp_server.port, **{"global.allowed_hosts": "sync.example.org, localhost:8080"}))
    alice = register(app, "alice@example.com")
    answer = ask_for_link(app, alice, EVIL, status=400)
    assert "host" in answer.text
    ask_for_link(app, alice, "localhost:9999", status=400)  # the entry names its port
    assert smtp_server.messages == []
    ask_for_link(app, alice, "SYNC.example.org:8000")
    ask_for_link(app, alice, "localhost:8080")
    links = [link.lower() for link in mailed_links(smtp_server)]
    assert len(links) == 2
    assert links[0].startswith("http://sync.example.org:8000/weave-password-reset?")
    assert links[1].startswith("http://localhost:8080/weave-password-reset?")


def test_a_forwarded_host_counts_only_from_a_trusted_proxy(make_test_app, smtp_server):
    app = make_test_app(**mail_settings(
        smtp_server.port, **{"global.allowed_hosts": "sync.example.org",
                             "global.trusted_proxies": "10.0.0.1"}))
    alice = register(app, "alice@example.com")
    forwarded = {"X-Forwarded-Host": EVIL}
    # From anyone else the header is ignored: the link follows the (allowed) Host.
    app.get(f"/user/1.0/{alice.username}/password_reset", headers=forwarded,
            extra_environ={"HTTP_HOST": "sync.example.org", "REMOTE_ADDR": "192.0.2.9"})
    url, _, _ = mailed_link(smtp_server, alice.email)
    assert url.startswith("http://sync.example.org/weave-password-reset?")
    # From the proxy it is believed, and then must be allowed itself.
    smtp_server.messages.clear()
    app.get(f"/user/1.0/{alice.username}/password_reset", headers=forwarded, status=400,
            extra_environ={"HTTP_HOST": "sync.example.org", "REMOTE_ADDR": "10.0.0.1"})
    assert smtp_server.messages == []


@pytest.mark.parametrize("host", [
    "evil.example/x?y=",                    # a path and a query smuggled into the name
    "sync.example.org, evil.example",       # two Host headers, joined by the WSGI server
    "sync.example.org:80:80",
    "sync.example.org@evil.example",
    "",
])
def test_malformed_hosts_are_a_400_and_never_part_of_a_link(make_test_app, smtp_server, host):
    app = make_test_app(**mail_settings(
        smtp_server.port, **{"global.allowed_hosts": "sync.example.org"}))
    alice = register(app, "alice@example.com")
    answer = ask_for_link(app, alice, host, status=400)
    assert "Host" in answer.text
    assert smtp_server.messages == []
    # node/weave builds URLs from the Host too: the same check.
    app.get(f"/user/1.0/{alice.username}/node/weave", status=400,
            extra_environ={"HTTP_HOST": host})


def test_the_reset_form_refuses_a_foreign_host_with_a_page(make_test_app, smtp_server, caplog):
    app = make_test_app(**mail_settings(smtp_server.port))
    alice = register(app, "alice@example.com")
    evil = {"HTTP_HOST": EVIL}
    page = app.get("/weave-password-reset", extra_environ=evil)
    page.form["username"] = alice.email
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        answer = page.form.submit(extra_environ=evil, status=503)
    assert answer.content_type == "text/html"
    assert "does not send password-reset mail" in answer.text
    assert smtp_server.messages == []
    assert any("MailLinkRefused" in record.getMessage() for record in caplog.records)


def test_the_reset_form_mails_the_public_url(make_test_app, smtp_server):
    app = make_test_app(**mail_settings(
        smtp_server.port, **{"global.public_url": "http://sync.example.org/"}))
    alice = register(app, "alice@example.com")
    evil = {"HTTP_HOST": EVIL}
    page = app.get("/weave-password-reset", extra_environ=evil)
    page.form["username"] = alice.email
    # The form's own origin check uses the public URL too: a browser there sends its Origin.
    answer = page.form.submit(extra_environ=evil,
                              headers={"Origin": "http://sync.example.org"})
    assert "If an account with that name exists" in answer.text
    url, _, _ = mailed_link(smtp_server, alice.email)
    assert url.startswith("http://sync.example.org/weave-password-reset?")


def test_start_up_warns_when_reset_mail_cannot_be_sent(make_test_app, smtp_server, caplog):
    with caplog.at_level(logging.WARNING, logger="syncserver"):
        make_test_app(**mail_settings(smtp_server.port))
    assert any("global.public_url" in record.getMessage() for record in caplog.records)
