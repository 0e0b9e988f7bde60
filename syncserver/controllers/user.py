"""User API 1.0: accounts, node lookup, password and e-mail changes (reference §3).

Checks run in the reference's order so clients see the same error codes.
Deleting an account deletes everything the user stored, too, and frees its
node slot. ``node/weave`` answers ``nodes.fallback_node`` (or this server's
own URL) unless ``nodes.assignment`` is on: then the user's node from the
node list, assigned on first request, or JSON ``null`` when none can be.

When the auth backend does not manage accounts (a read-only company
directory), registration, password and e-mail changes and deletion answer
**403** with a JSON string saying so, before anything is changed. Not a 503:
that would make clients back off and retry a request that can never succeed.
The same goes for password resets (requesting a link, redeeming a code).

Reset links are limited per account (``throttle.reset_mail_*``): a request
too soon answers 503 with ``Retry-After``, as too many wrong reset codes do.
With ``captcha.use`` on, requesting a link checks the captcha sent in the
query (``captcha-challenge``, ``captcha-response``; reference §3.8) unless
``X-Weave-Secret`` carries the shared secret.
"""

import hmac
import json
import logging

from webob import Response, exc

from syncserver.accounts.deletion import delete_account
from syncserver.accounts.password_reset import (
    InvalidResetCode,
    NoEmailAddress,
    TooManyAttempts,
    TooManyResetMails,
    UnknownAccount,
)
from syncserver.auth import AccountsManagedElsewhere, RegistrationClosed, UserExists
from syncserver.auth.usernames import (
    extract_username,
    is_valid_email,
    is_valid_username,
    is_weak_password,
)
from syncserver.controllers.bodies import read_json_body, read_text_body
from syncserver.protocol import respcodes
from syncserver.protocol.query import query_parameters
from syncserver.protocol.respcodes import WeaveError
from syncserver.web.basic_auth import authenticate_request
from syncserver.web.public_url import MailBaseUnknown, mail_base_url, public_base_url
from syncserver.web.request_context import client_address

logger = logging.getLogger(__name__)

#: User API bodies are a password or an address: nothing needs more.
MAX_USER_BODY_BYTES = 64 * 1024
MANAGED_ELSEWHERE_MESSAGE = (
    "Accounts on this server are managed by the company directory: ask its administrators "
    "to create, change or delete yours.")
WEAK_PASSWORD_MESSAGE = (
    "Password should be at least 8 characters and not the same as your username")
MAIL_LINKS_UNCONFIGURED_MESSAGE = (
    "Password reset cannot send links: this server does not know its public address "
    "(global.public_url).")
MAIL_HOST_REFUSED_MESSAGE = (
    "Password reset links are sent only for this server's own host names; the request "
    "named another host.")


class UserController:
    """Answers ``/user/1.0/<username>/...``."""

    def __init__(self, auth, storage, settings, *, nodes=None, password_reset=None,
                 captcha=None, throttle=None):
        self.auth = auth
        self.storage = storage
        self.nodes = nodes
        self.assignment = settings.nodes.assignment
        #: A :class:`~syncserver.accounts.password_reset.PasswordReset` (None: no SMTP).
        self.password_reset = password_reset
        self.captcha = captcha
        #: The login throttle (None when ``throttle.enabled`` is false).
        self.throttle = throttle
        self.strict_usernames = settings.auth.strict_usernames
        self.fallback_node = settings.nodes.fallback_node
        self.shared_secret = settings.global_.shared_secret
        self.retry_after = settings.global_.retry_after
        self.global_settings = settings.global_

    def user_exists(self, request, username):
        exists = is_valid_username(username) and self.auth.get_user(username) is not None
        return _text("1" if exists else "0")

    def create_user(self, request, username):
        if not is_valid_username(username):
            raise WeaveError(respcodes.INVALID_USERNAME)
        if self.auth.get_user(username) is not None:
            raise WeaveError(respcodes.OVERWRITE_NOT_ALLOWED)
        self._check_manages_accounts()
        body = read_json_body(request, MAX_USER_BODY_BYTES)
        if not isinstance(body, dict):
            raise WeaveError(respcodes.JSON_PARSE_FAILURE)
        email = body.get("email")
        if not isinstance(email, str) or not is_valid_email(email):
            raise WeaveError(respcodes.NO_EMAIL_ADDRESS)
        if self.strict_usernames and _sync_username(email) != username:
            raise WeaveError(respcodes.EMAIL_USERNAME_MISMATCH)
        password = body.get("password")
        if not isinstance(password, str) or not password:
            raise WeaveError(respcodes.MISSING_PASSWORD)
        if is_weak_password(username, password):
            raise WeaveError(respcodes.WEAK_PASSWORD)
        if self.captcha is not None and not self._has_shared_secret(request):
            self._check_captcha(request, body.get("captcha-challenge"),
                                body.get("captcha-response"))
        try:
            self.auth.create_user(username, password, email)
        except UserExists:
            raise WeaveError(respcodes.OVERWRITE_NOT_ALLOWED) from None
        except RegistrationClosed:
            raise self._unavailable("New accounts are not accepted on this server.") from None
        except AccountsManagedElsewhere as error:
            raise _forbidden(str(error)) from None
        return Response(username, content_type="text/html", charset="UTF-8")

    def delete_user(self, request, username):
        user = request.sync_user
        self._check_manages_accounts()
        codes = self.password_reset.codes if self.password_reset is not None else None
        deleted = delete_account(user, self.auth, self.storage, self.nodes, codes)
        return _text("1" if deleted else "0")

    def get_node(self, request, username):
        if not is_valid_username(username) or self.auth.get_user(username) is None:
            raise exc.HTTPNotFound()
        if self.assignment:
            node = self.nodes.assign_node(username)
            if node is None:
                logger.warning("node/weave: no node can take user %r (all full, unavailable "
                               "or downed)", username)
                return Response(b"null", content_type="application/json", charset=None)
        else:
            node = self.fallback_node or public_base_url(request, self.global_settings) + "/"
        return Response(node, content_type="text/html", charset="UTF-8")

    def change_password(self, request, username):
        new_password = read_text_body(request, MAX_USER_BODY_BYTES)
        if is_weak_password(username, new_password):
            raise exc.HTTPBadRequest(WEAK_PASSWORD_MESSAGE)
        if "X-Weave-Password-Reset" in request.headers:
            return self._change_password_with_code(
                request, username, new_password, request.headers["X-Weave-Password-Reset"])
        user = authenticate_request(request, self.auth, username, self.throttle)
        self._check_manages_accounts()
        self.auth.set_password(user.username, new_password)
        self._void_reset_code(user, "password changed")
        return _text("success")

    def _change_password_with_code(self, request, username, new_password, code):
        """Reference §3.5 step 2a; the code is used up (unlike the reference)."""
        self._check_manages_accounts()
        reset = self._reset_flow()
        try:
            reset.reset_password(username, code, new_password, client_address(request))
        except UnknownAccount:
            raise exc.HTTPNotFound() from None
        except InvalidResetCode:
            raise WeaveError(respcodes.INVALID_RESET_CODE) from None
        except TooManyAttempts:
            raise self._unavailable("Too many wrong reset codes; try again later.") from None
        return _text("success")

    def change_email(self, request, username):
        email = read_text_body(request, MAX_USER_BODY_BYTES).strip()
        if not is_valid_email(email):
            raise WeaveError(respcodes.NO_EMAIL_ADDRESS)
        self._check_manages_accounts()
        self.auth.set_email(request.sync_user.username, email)
        # A link mailed to the old address must not outlive it.
        self._void_reset_code(request.sync_user, "e-mail address changed")
        return _text(email)

    def request_password_reset(self, request, username):
        """Mail a reset link (reference §3.8), the captcha checked in the query when configured."""
        self._check_manages_accounts()
        reset = self._reset_flow()
        try:
            base_url = mail_base_url(request, self.global_settings)
        except MailBaseUnknown:
            if not self.global_settings.allowed_hosts:
                raise self._unavailable(MAIL_LINKS_UNCONFIGURED_MESSAGE) from None
            raise exc.HTTPBadRequest(MAIL_HOST_REFUSED_MESSAGE) from None
        check = None
        if self.captcha is not None and not self._has_shared_secret(request):
            params = query_parameters(request)

            def check():
                self._check_captcha(request, params.get("captcha-challenge"),
                                    params.get("captcha-response"))
        try:
            reset.send_link(username, base_url, check=check, client=client_address(request))
        except UnknownAccount:
            raise WeaveError(respcodes.INVALID_USERNAME) from None
        except NoEmailAddress:
            raise WeaveError(respcodes.NO_EMAIL_ADDRESS) from None
        except TooManyResetMails as refused:
            raise self._unavailable("A reset link was sent recently; try again later.",
                                    retry_after=refused.retry_after) from None
        return _text("success")

    def cancel_password_reset(self, request, username):
        self._reset_flow().cancel(request.sync_user)
        return _text("success")

    def _void_reset_code(self, user, what):
        if self.password_reset is not None:
            self.password_reset.credentials_changed(user, what)

    def _reset_flow(self):
        if self.password_reset is None:
            raise self._unavailable("Password reset is not configured on this server.")
        return self.password_reset

    def _check_manages_accounts(self):
        if not self.auth.manages_accounts:
            raise _forbidden(MANAGED_ELSEWHERE_MESSAGE)

    def _has_shared_secret(self, request):
        """True when ``X-Weave-Secret`` equals ``global.shared_secret`` (a trusted script)."""
        given = request.headers.get("X-Weave-Secret")
        if not self.shared_secret or given is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                   self.shared_secret.encode("utf-8"))

    def _check_captcha(self, request, challenge, response):
        """400 code 2 unless the captcha backend accepts the answer (503 if it is down).

        ``challenge`` may be missing: token captchas (reCAPTCHA v2, hCaptcha)
        carry everything in ``response``.
        """
        if not isinstance(response, str) or not response or not (
                challenge is None or isinstance(challenge, str)):
            _captcha_log(request, "missing captcha answer")
            raise WeaveError(respcodes.INVALID_CAPTCHA)
        if not self.captcha.verify(challenge, response, client_address(request)):
            _captcha_log(request, "wrong captcha answer")
            raise WeaveError(respcodes.INVALID_CAPTCHA)

    def _unavailable(self, message, retry_after=None):
        seconds = self.retry_after if retry_after is None else retry_after
        error = exc.HTTPServiceUnavailable(headers={"Retry-After": str(seconds)})
        error.content_type = "application/json"
        error.charset = None
        error.body = ('"' + message + '"').encode("ascii")
        return error


def _forbidden(message):
    error = exc.HTTPForbidden()
    error.content_type = "application/json"
    error.charset = None
    error.body = json.dumps(message).encode("ascii")
    return error


security_log = logging.getLogger("syncserver.security")


def _captcha_log(request, reason):
    security_log.info("CaptchaFail: %s from %s on %s",
                      reason, client_address(request), request.path_info)


def _sync_username(email):
    try:
        return extract_username(email)
    except (UnicodeError, ValueError):
        return None


def _text(text):
    return Response(text, content_type="text/plain", charset="UTF-8")
