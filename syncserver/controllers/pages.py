"""The HTML pages: password reset (reference §3.11, defects fixed) and account deletion.

``/weave-password-reset``
    GET without ``key``: a form asking for the user name or e-mail address;
    POST of it mails a link (the page says the same whether or not the
    account exists). GET with ``key`` (the mailed link): a form for the new
    password twice; POST of it redeems the code and sets the password.
``/weave-delete-account``
    GET: user name, password and a confirmation box; POST deletes the
    account and everything it stored.

When the accounts live in a read-only directory (``auth.manages_accounts``
false) both pages say so instead of showing a form, and change nothing.

Every form is CSRF-protected (:mod:`syncserver.web.csrf`); every page forbids
framing, scripts and caching, and sends no Referer elsewhere (the reset
link's key is in the URL). Wrong passwords and codes go to the security log
and through the shared throttle.
"""

import logging

from webob import Response, exc

from syncserver import templating
from syncserver.accounts.deletion import delete_account
from syncserver.accounts.mail import MailUnavailable
from syncserver.accounts.password_reset import (
    InvalidResetCode,
    NoEmailAddress,
    NoThrottle,
    TooManyAttempts,
    TooManyResetMails,
    UnknownAccount,
    describe_duration,
)
from syncserver.auth.usernames import extract_username, is_weak_password
from syncserver.controllers.bodies import read_form
from syncserver.protocol.query import query_parameters
from syncserver.web.csrf import CSRFGuard, derive_secret
from syncserver.web.public_url import MailBaseUnknown, mail_base_url, public_base_url
from syncserver.web.request_context import client_address

logger = logging.getLogger("syncserver")
security_log = logging.getLogger("syncserver.security")

#: A form holds a name and two passwords: nothing needs more.
MAX_FORM_BYTES = 16 * 1024

PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Same-origin: our own forms still send Origin/Referer; other sites never see the key.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

WEAK_PASSWORD_MESSAGE = (
    "The password should be at least 8 characters and not the same as your user name.")
BAD_LINK_MESSAGE = (
    "This link does not work any more: it was already used, it expired, or a newer one "
    "was sent. Please request a new one.")
TOO_MANY_MESSAGE = "Too many attempts. Please wait a while and try again."


class PagesController:
    """Answers the HTML pages; ``password_reset`` is None when SMTP is not set up."""

    def __init__(self, auth, storage, settings, password_reset=None, throttle=None, nodes=None):
        self.auth = auth
        self.storage = storage
        self.nodes = nodes
        self.password_reset = password_reset
        self.throttle = throttle or NoThrottle()
        self.global_settings = settings.global_
        self.retry_after = settings.global_.retry_after
        self.csrf = CSRFGuard(derive_secret(settings.pages, settings.global_))

    # --- password reset -------------------------------------------------------

    def password_reset_page(self, request):
        if not self.auth.manages_accounts:
            return self._managed_elsewhere(request, "password")
        if self.password_reset is None:
            return self._reset_not_configured(request)
        params = query_parameters(request)
        key = params.get("key")
        if key is not None:
            return self._render(request, "reset_password.html",
                                username=params.get("username", ""), key=key)
        return self._render(request, "reset_request.html", username=params.get("username", ""))

    def password_reset_submit(self, request):
        if not self.auth.manages_accounts:
            return self._managed_elsewhere(request, "password")
        if self.password_reset is None:
            return self._reset_not_configured(request)
        self._check_form(request)
        if "key" in request.POST:
            return self._set_new_password(request)
        return self._send_reset_link(request)

    def _send_reset_link(self, request):
        typed = request.POST.get("username", "").strip()
        if not typed:
            return self._render(request, "reset_request.html", status=400, username="",
                                error="Please enter your user name or e-mail address.")
        try:
            base_url = mail_base_url(request, self.global_settings)
        except MailBaseUnknown:
            return self._render(
                request, "message.html", status=400 if self.global_settings.allowed_hosts else 503,
                title="Password reset is not available here",
                message="This server does not send password-reset mail for the address you "
                        "reached it by. Please ask its administrator for the right address.")
        username = _normalize_username(typed)
        try:
            if username is None:
                raise UnknownAccount(typed)
            self.password_reset.send_link(username, base_url, client=client_address(request))
        except (UnknownAccount, NoEmailAddress, TooManyResetMails) as refused:
            # Said nowhere but in the log: the page must not tell who has an account.
            logger.info("no reset mail sent for %r: %s", typed[:100], type(refused).__name__)
        except MailUnavailable as error:
            logger.error("password reset mail failed: %s", error)
            return self._render(
                request, "message.html", status=503, title="Please try again later",
                message="We could not send mail just now. Please try again in a while.",
                headers={"Retry-After": str(self.retry_after)})
        lifetime = describe_duration(self.password_reset.codes.lifetime_seconds)
        return self._render(
            request, "message.html", title="Check your mail",
            message=("If an account with that name exists, we have mailed a link to its "
                     f"address. The link works once, within the next {lifetime}."))

    def _set_new_password(self, request):
        form = request.POST
        key, typed = form.get("key", ""), form.get("username", "")
        password, confirm = form.get("password", ""), form.get("confirm", "")

        def again(message, status=400):
            return self._render(request, "reset_password.html", status=status,
                                username=typed, key=key, error=message)

        if not typed:
            return again("User name not provided. Please check the link you used.")
        if not password:
            return again("Please enter a new password.")
        if password != confirm:
            return again("The password and its confirmation do not match.")
        username = _normalize_username(typed)
        if username is None:
            return again(BAD_LINK_MESSAGE)
        if is_weak_password(username, password):
            return again(WEAK_PASSWORD_MESSAGE)
        try:
            self.password_reset.reset_password(username, key, password, client_address(request))
        except (UnknownAccount, InvalidResetCode):
            return again(BAD_LINK_MESSAGE)
        except TooManyAttempts:
            return again(TOO_MANY_MESSAGE, status=429)
        return self._render(request, "message.html", title="Password changed",
                            message="Password successfully changed. Use the new password "
                                    "on every device that syncs with this account.")

    def _reset_not_configured(self, request):
        return self._render(request, "message.html", status=503,
                            title="Password reset is not available",
                            message="This server is not set up to send password-reset mail. "
                                    "Please ask its administrator.",
                            headers={"Retry-After": str(self.retry_after)})

    # --- delete account ---------------------------------------------------------

    def delete_account_page(self, request):
        if not self.auth.manages_accounts:
            return self._managed_elsewhere(request, "account")
        return self._render(request, "delete_account.html", username="")

    def delete_account_submit(self, request):
        if not self.auth.manages_accounts:
            # Before any password check: the data must stay with the account that stays.
            return self._managed_elsewhere(request, "account")
        self._check_form(request)
        form = request.POST
        typed, password = form.get("username", "").strip(), form.get("password", "")

        def again(message, status=400):
            return self._render(request, "delete_account.html", status=status,
                                username=typed, error=message)

        if not typed or not password:
            return again("Please enter your user name and password.")
        if form.get("confirm") != "yes":
            return again("Please tick the box to confirm that everything should be deleted.")
        username = _normalize_username(typed)
        key = f"delete-account:{username}"
        if username is not None and not self.throttle.check(key):
            return again(TOO_MANY_MESSAGE, status=429)
        user = None if username is None else self.auth.authenticate(username, password)
        if user is None:
            if username is not None:
                self.throttle.failure(key)
            security_log.warning("AuthFail: authentication failed for user %r from %s on "
                                 "the delete-account page", typed[:100], client_address(request))
            return again("Wrong user name or password.")
        self.throttle.success(key)
        codes = self.password_reset.codes if self.password_reset is not None else None
        delete_account(user, self.auth, self.storage, self.nodes, codes)
        security_log.info("AccountDeleted: user %r from %s on the delete-account page",
                          user.username, client_address(request))
        return self._render(request, "message.html", title="Account deleted",
                            message="Your account and all the data it stored on this server "
                                    "have been deleted.")

    # --- shared -------------------------------------------------------------------

    def _managed_elsewhere(self, request, what):
        """The friendly 403 page of a server whose accounts live in a read-only directory."""
        if what == "password":
            title = "Passwords are managed by your directory"
            message = ("Passwords of accounts on this server are managed by the company "
                       "directory. Change yours there, or ask its administrators to reset it.")
        else:
            title = "Accounts are managed by your directory"
            message = ("Accounts on this server are managed by the company directory: ask its "
                       "administrators to delete yours. Nothing was deleted.")
        return self._render(request, "message.html", status=403, title=title, message=message)

    def _check_form(self, request):
        """Refuse empty, oversized, non-form, unreadable or forged POSTs before reading a field."""
        length = request.content_length
        if not length:
            raise exc.HTTPBadRequest("The form is empty.")
        if length > MAX_FORM_BYTES:
            raise exc.HTTPRequestEntityTooLarge(f"Forms are limited to {MAX_FORM_BYTES} bytes.")
        if request.content_type not in ("application/x-www-form-urlencoded",
                                        "multipart/form-data"):
            raise exc.HTTPUnsupportedMediaType("Send the form as a web browser does.")
        read_form(request, MAX_FORM_BYTES)
        self.csrf.check(request, public_base_url(request, self.global_settings))

    def _render(self, request, template, status=200, headers=None, **context):
        response = Response(status=status, content_type="text/html", charset="UTF-8")
        context["csrf_field"] = "csrf_token"
        context["csrf_token"] = self.csrf.prepare(
            request, response, public_base_url(request, self.global_settings))
        context.setdefault("error", None)
        context["script_name"] = request.script_name
        response.text = templating.render(template, **context)
        response.headers.update(PAGE_HEADERS)
        response.headers.update(headers or {})
        return response


def _normalize_username(typed):
    """The Sync username for what a person typed (an e-mail becomes its hash), or None."""
    try:
        return extract_username(typed)
    except (UnicodeError, ValueError):
        return None

