"""Sending mail through a real SMTP server (aiosmtpd), with and without TLS and login."""

import pytest

from syncserver.accounts.mail import Mailer, MailUnavailable
from syncserver.settings import SMTPSettings
from tests.services import SMTPServer, free_port, self_signed_certificate


def test_sends_utf8_text(smtp_server):
    mailer = Mailer(SMTPSettings(host="127.0.0.1", port=smtp_server.port,
                                 sender="Sync <sync@example.org>"))
    mailer.send("zoë@example.com", "Hello", "Grüße: https://example.org/x?a=1&b=2\n")
    (mail,) = smtp_server.mails()
    assert mail["From"] == "Sync <sync@example.org>"
    assert mail["To"] == "zoë@example.com"
    assert mail["Subject"] == "Hello"
    assert mail["Message-ID"].endswith("@example.org>")
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().replace("\r\n", "\n") == "Grüße: https://example.org/x?a=1&b=2\n"


def test_unreachable_server_is_unavailable():
    mailer = Mailer(SMTPSettings(host="127.0.0.1", port=free_port(), sender="s@example.org"))
    with pytest.raises(MailUnavailable, match="ConnectionRefusedError"):
        mailer.send("a@example.com", "x", "y")


@pytest.fixture(scope="module")
def tls_smtp_server(tmp_path_factory):
    try:
        files = self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))
        server = SMTPServer(tls_files=files, logins={"mailer": "s3cret:pass"}).start()
    except Exception as error:
        from tests.conftest import service_missing

        service_missing("SMTP test server with TLS (aiosmtpd, openssl)", error)
    yield server, files[0]
    server.stop()


def test_starttls_and_login(tls_smtp_server):
    server, ca_file = tls_smtp_server
    server.messages.clear()
    mailer = Mailer(SMTPSettings(host="127.0.0.1", port=server.port, sender="s@example.org",
                                 user="mailer", password="s3cret:pass", starttls=True,
                                 ca_file=str(ca_file)))
    mailer.send("a@example.com", "over TLS", "body\n")
    assert server.accepted_logins[-1] == "mailer"
    assert [mail["Subject"] for mail in server.mails()] == ["over TLS"]


def test_untrusted_certificate_is_refused(tls_smtp_server):
    server, _ = tls_smtp_server
    mailer = Mailer(SMTPSettings(host="127.0.0.1", port=server.port, sender="s@example.org",
                                 user="mailer", password="s3cret:pass", starttls=True))
    with pytest.raises(MailUnavailable, match="SSLCertVerificationError"):
        mailer.send("a@example.com", "x", "y")


def test_wrong_login_is_unavailable_and_not_logged_with_the_password(tls_smtp_server):
    server, ca_file = tls_smtp_server
    mailer = Mailer(SMTPSettings(host="127.0.0.1", port=server.port, sender="s@example.org",
                                 user="mailer", password="wrong-password", starttls=True,
                                 ca_file=str(ca_file)))
    with pytest.raises(MailUnavailable) as raised:
        mailer.send("a@example.com", "x", "y")
    assert "wrong-password" not in str(raised.value)


def test_server_requiring_tls_refuses_plain_text(tls_smtp_server):
    server, _ = tls_smtp_server
    mailer = Mailer(SMTPSettings(host="127.0.0.1", port=server.port, sender="s@example.org"))
    with pytest.raises(MailUnavailable):
        mailer.send("a@example.com", "x", "y")


def test_starttls_against_a_server_without_it_is_refused(smtp_server):
    mailer = Mailer(SMTPSettings(host="127.0.0.1", port=smtp_server.port,
                                 sender="s@example.org", starttls=True))
    with pytest.raises(MailUnavailable, match="STARTTLS"):
        mailer.send("a@example.com", "x", "y")
    assert smtp_server.messages == []
