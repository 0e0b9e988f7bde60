"""The password-reset flow, shared by the User API and the HTML pages (reference §3.8-3.11).

1. :meth:`PasswordReset.send_link` stores a fresh code for the account and
   mails a link ``<public URL>/weave-password-reset?username=...&key=...``
   to the account's address.
2. :meth:`PasswordReset.reset_password` redeems the code (once, before it
   expires) and sets the new password; the old one stops working at once.

A pending code dies with the credentials it was issued against: every other
way a password or address changes (the User API, ``syncserver-admin``) calls
:meth:`PasswordReset.credentials_changed` (or :func:`void_pending_code`),
so a link mailed before the change can no longer take the account over.

It needs only :class:`~syncserver.auth.AuthBackend`'s ``get_user`` and
``set_password``, so it works with any authentication backend. Wrong codes
are security events (logger ``syncserver.security``; the code itself is
never logged) and go through :attr:`PasswordReset.throttle`, the single
place where a brute-force limiter plugs in; :attr:`PasswordReset.mail_limit`
bounds how often one account is mailed.

When the accounts live in a read-only directory (``auth.manages_accounts``
false) no step runs: :class:`~syncserver.auth.AccountsManagedElsewhere`.
"""

import logging
import urllib.parse

from syncserver import templating
from syncserver.auth import AccountsManagedElsewhere

security_log = logging.getLogger("syncserver.security")

MAIL_SUBJECT = "Resetting your Sync password"


class ResetRefused(Exception):
    """Base class of the reasons a reset step is refused (never a server fault)."""


class UnknownAccount(ResetRefused):
    """No enabled account has that username."""


class NoEmailAddress(ResetRefused):
    """The account has no e-mail address to send the link to."""


class InvalidResetCode(ResetRefused):
    """The code is wrong, used or expired."""


class TooManyAttempts(ResetRefused):
    """The throttle refuses more code guesses for this account for now."""


class TooManyResetMails(ResetRefused):
    """The account was mailed a link too recently; ``retry_after`` seconds to wait."""

    def __init__(self, username, retry_after):
        super().__init__(username)
        self.retry_after = retry_after


PASSWORDS_ELSEWHERE = "passwords are managed by the directory, not by this server"


class NoThrottle:
    """The default throttle: allows everything.

    A real one (e.g. the login throttle) provides the same three methods:
    ``check(key)`` returns False to refuse an attempt before it is tried,
    ``failure(key)`` counts a wrong guess and ``success(key)`` clears the count.
    """

    def check(self, key):
        return True

    def failure(self, key):
        pass

    def success(self, key):
        pass


class NoMailLimit:
    """The default mail limit: none. A real one is
    :class:`syncserver.throttle.login.ResetMailLimit` (``wait`` and ``record``)."""

    def wait(self, username):
        return 0

    def record(self, username):
        pass


class PasswordReset:
    """Sends reset links and redeems their codes; see the module docstring."""

    def __init__(self, auth, codes, mailer, throttle=None, mail_limit=None):
        self.auth = auth
        self.codes = codes
        self.mailer = mailer
        self.throttle = throttle or NoThrottle()
        self.mail_limit = mail_limit or NoMailLimit()

    def send_link(self, username, base_url, check=None, client="-"):
        """Mail a fresh reset link to ``username``'s address.

        ``check()``, when given, runs after the account checks and before
        anything is issued (the API's captcha, in the reference's order).
        Raises :class:`~syncserver.auth.AccountsManagedElsewhere`,
        :class:`UnknownAccount`, :class:`NoEmailAddress`,
        :class:`TooManyResetMails`, and :class:`~syncserver.accounts.mail.MailUnavailable`
        when the mail server fails.
        """
        self._check_manages_passwords()
        user = self._enabled_user(username)
        if not user.email:
            raise NoEmailAddress(username)
        if check is not None:
            check()
        wait = self.mail_limit.wait(user.username)
        if wait > 0:
            security_log.warning("PasswordResetThrottled: no mail to user %r for %d s (from %s)",
                                 user.username, wait, client)
            raise TooManyResetMails(username, wait)
        self.mail_limit.record(user.username)
        code = self.codes.issue(user.user_id)
        query = urllib.parse.urlencode({"username": user.username, "key": code})
        text = templating.render(
            "password_reset_mail.txt", server=base_url,
            link=f"{base_url}/weave-password-reset?{query}",
            validity=describe_duration(self.codes.lifetime_seconds))
        self.mailer.send(user.email, MAIL_SUBJECT, text)
        security_log.info("PasswordResetRequested for user %r", user.username)

    def reset_password(self, username, code, new_password, client="-"):
        """Redeem ``code`` and set ``new_password``; return the :class:`~syncserver.auth.User`.

        Raises :class:`UnknownAccount`, :class:`TooManyAttempts` or
        :class:`InvalidResetCode` (the password is then unchanged).
        ``client`` (an address) is only for the security log.
        """
        self._check_manages_passwords()
        user = self._enabled_user(username)
        key = f"reset-code:{user.username}"
        if not self.throttle.check(key):
            security_log.warning("ResetCodeThrottled for user %r from %s", user.username, client)
            raise TooManyAttempts(username)
        if not self.codes.redeem(user.user_id, code):
            self.throttle.failure(key)
            security_log.warning("InvalidResetCode submitted for user %r from %s",
                                 user.username, client)
            raise InvalidResetCode(username)
        self.throttle.success(key)
        self.auth.set_password(user.username, new_password)
        security_log.info("PasswordReset for user %r from %s", user.username, client)
        return user

    def cancel(self, user):
        """Forget ``user``'s pending code (DELETE password_reset)."""
        self.codes.clear(user.user_id)
        security_log.info("PasswordResetCleared for user %r", user.username)

    def credentials_changed(self, user, what):
        """Void ``user``'s pending code: ``what`` (``"password changed"``...) happened."""
        return void_pending_code(self.codes, user, what)

    def _check_manages_passwords(self):
        if not self.auth.manages_accounts:
            raise AccountsManagedElsewhere(PASSWORDS_ELSEWHERE)

    def _enabled_user(self, username):
        user = self.auth.get_user(username)
        if user is None or not user.enabled:
            raise UnknownAccount(username)
        return user


def void_pending_code(codes, user, what):
    """Forget ``user``'s code in ``codes`` (a :class:`ResetCodeStore`) because of ``what``.

    Returns True when there was one (and logs it as a security event).
    """
    voided = codes.clear(user.user_id)
    if voided:
        security_log.info("PasswordResetVoided for user %r: %s", user.username, what)
    return voided


def describe_duration(seconds):
    """``21600`` -> ``"6 hours"``; ``90`` -> ``"2 minutes"`` (for people, rounded up)."""
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    minutes = -(-seconds // 60)
    return f"{minutes} minute" + ("s" if minutes != 1 else "")
