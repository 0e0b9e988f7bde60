"""Sending mail through an SMTP server (password-reset links).

One short connection per message: resets are rare, and a kept-open
connection would only time out between them. Plain SMTP, STARTTLS or SMTPS
(``smtp.ssl``), optional LOGIN; certificates are always verified, against
``smtp.ca_file`` when given. Any failure to hand the message over becomes
:class:`MailUnavailable`, which the application answers with 503 and
``Retry-After`` like any backend that is down.
"""

import email.message
import email.utils
import smtplib
import ssl

from syncserver.errors import BackendUnavailable


class MailUnavailable(BackendUnavailable):
    """The SMTP server could not be reached or refused the message (503)."""

    service = "smtp"


class Mailer:
    """Sends text mail as configured by :class:`syncserver.settings.SMTPSettings`."""

    def __init__(self, settings):
        self.settings = settings

    def send(self, recipient, subject, text):
        """Hand one UTF-8 text/plain message to the SMTP server; raise :class:`MailUnavailable`."""
        message = email.message.EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = email.utils.formatdate(localtime=False)
        message["Message-ID"] = email.utils.make_msgid(domain=_domain(self.settings.sender))
        message.set_content(text, charset="utf-8")
        try:
            with self._connect() as connection:
                if self.settings.user:
                    connection.login(self.settings.user, self.settings.password)
                connection.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            # smtplib's messages hold the server's reply, never our password.
            raise MailUnavailable(
                f"cannot send mail through {self.settings.host}:{self.settings.port}: "
                f"{type(error).__name__}: {error}") from error

    def is_healthy(self, timeout=None):
        """True when the server greets us, (upgrades to TLS,) and answers NOOP; never raises.

        Sends no mail and does not log in (a failed login every minute would
        look like an attack). ``timeout`` (seconds) caps ``smtp.timeout``.
        """
        try:
            with self._connect(timeout) as connection:
                code, _ = connection.noop()
        except (OSError, smtplib.SMTPException):
            return False
        return code == 250

    def check(self):
        """Connect, greet (EHLO), STARTTLS and log in as configured, then QUIT: no mail.

        Raises :class:`MailUnavailable` with the reason, as :meth:`send` would.
        """
        try:
            with self._connect() as connection:
                connection.ehlo_or_helo_if_needed()
                if self.settings.user:
                    connection.login(self.settings.user, self.settings.password)
        except (OSError, smtplib.SMTPException) as error:
            raise MailUnavailable(
                f"{self.settings.host}:{self.settings.port}: {type(error).__name__}: {error}"
            ) from error

    def _connect(self, timeout=None):
        settings = self.settings
        timeout = min(timeout, settings.timeout) if timeout else settings.timeout
        if settings.ssl:
            return smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout,
                                    context=self._tls_context())
        connection = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        if settings.starttls:
            try:
                connection.starttls(context=self._tls_context())
            except BaseException:
                connection.close()
                raise
        return connection

    def _tls_context(self):
        return ssl.create_default_context(cafile=self.settings.ca_file or None)


def _domain(address):
    """The domain of ``address`` for Message-IDs (so they do not reveal our host name)."""
    _, parsed = email.utils.parseaddr(address)
    return parsed.rpartition("@")[2] or None
