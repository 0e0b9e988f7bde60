"""The password-reset flow, shared by the User API and the HTML pages (reference §3.8-3.11).

1. :meth:`PasswordReset.send_link` stores a fresh code for the account and
   mails a link ``<public URL>/weave-password-reset?username=...&key=...``
   to the account's address.
2. :meth:`PasswordReset.reset_password` redeems the code (once, before it
   expires) and sets the new password; the old one stops working at once.

It needs only :class:`~syncserver.auth.AuthBackend`'s ``get_user`` and
``set_password``, so it works with any authentication backend. Wrong codes
are security events (logger ``syncserver.security``; the code itself is
never logged) and go through :attr:`PasswordReset.throttle`, the single
place where a brute-force limiter plugs in.
"""

import logging
import urllib.parse

from syncserver import templating

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


class PasswordReset:
    """Sends reset links and redeems their codes; see the module docstring."""

    def __init__(self, auth, codes, mailer, throttle=None):
        self.auth = auth
        self.codes = codes
        self.mailer = mailer
        self.throttle = throttle or NoThrottle()

    def send_link(self, username, base_url):
        """Mail a fresh reset link to ``username``'s address.

        Raises :class:`UnknownAccount`, :class:`NoEmailAddress`, and
        :class:`~syncserver.mail.MailUnavailable` when the mail server fails.
        """
        user = self._enabled_user(username)
        if not user.email:
            raise NoEmailAddress(username)
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

    def _enabled_user(self, username):
        user = self.auth.get_user(username)
        if user is None or not user.enabled:
            raise UnknownAccount(username)
        return user


def describe_duration(seconds):
    """``21600`` -> ``"6 hours"``; ``90`` -> ``"2 minutes"`` (for people, rounded up)."""
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    minutes = -(-seconds // 60)
    return f"{minutes} minute" + ("s" if minutes != 1 else "")
