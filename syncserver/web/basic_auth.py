"""HTTP Basic authentication of a request against its path (reference §4.2).

The username in the Authorization header must equal, byte for byte, the one
in the URL; an e-mail address typed by a person is turned into its Sync
hash. Any failure is a 401 (a 400 only for a username that cannot be
hashed), and the reason goes to the security log, never the password.

With a :class:`~syncserver.throttle.login.LoginThrottle`, an account or
address that failed too often is refused with 429 and ``Retry-After``
before its password is even checked, and each outcome is counted.
"""

import base64
import binascii
import logging

from webob import exc

from syncserver import metrics
from syncserver.auth.usernames import extract_username
from syncserver.web.request_context import USERNAME_KEY, client_address
from syncserver.wording import count_of

security_log = logging.getLogger("syncserver.security")

REALM = 'Basic realm="Sync"'


def authenticate_request(request, backend, path_username=None, throttle=None):
    """Return the authenticated :class:`~syncserver.auth.User` or raise a WebOb error.

    Also stores the clear-text password on ``request.sync_password`` for
    the few actions that need it again.
    """
    if request.environ.get("REMOTE_USER"):
        raise exc.HTTPInternalServerError(
            "The web server handled authentication itself, which is not compatible with "
            "this server: pass the Authorization header through (WSGIPassAuthorization On).")
    header = request.headers.get("Authorization")
    if not header:
        _refuse(request, path_username, "no Authorization header", "no_credentials")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        _refuse(request, path_username, "unknown authorization scheme", "bad_header",
                challenge=False)
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        _refuse(request, path_username, "badly encoded Authorization header", "bad_header",
                challenge=False)
    raw_username, colon, raw_password = decoded.partition(b":")
    if not colon:
        _refuse(request, path_username, "badly encoded Authorization header", "bad_header",
                challenge=False)
    try:
        header_username = raw_username.decode("utf-8")
        password = raw_password.decode("utf-8")
    except UnicodeDecodeError:
        _refuse(request, path_username, "username or password is not UTF-8", "bad_header",
                challenge=False)
    if path_username is not None and header_username != path_username:
        _refuse(request, path_username, "username does not match the URL", "username_mismatch",
                challenge=False)
    try:
        username = extract_username(header_username)
    except (UnicodeError, ValueError):
        _log(request, path_username, "invalid characters in username")
        metrics.recorder.auth_failure("invalid_username")
        raise exc.HTTPBadRequest("Invalid characters specified in username") from None
    address = client_address(request)
    if throttle is not None:
        seconds, reason = throttle.check(username, address)
        if seconds:
            throttle.refused(username, address, seconds, reason)
            raise exc.HTTPTooManyRequests(
                f"Too many failed logins; try again in {count_of(seconds, 'second')}.",
                headers={"Retry-After": str(seconds)})
    user = backend.authenticate(username, password)
    if user is None:
        if throttle is not None:
            throttle.failed(username, address)
        _refuse(request, username, "authentication failed", "wrong_password", challenge=False)
    if throttle is not None:
        throttle.succeeded(username, address)
    request.sync_user = user
    request.sync_password = password
    request.environ[USERNAME_KEY] = user.username
    request.environ.pop("HTTP_AUTHORIZATION", None)
    return user


def _refuse(request, username, reason, metric_reason, challenge=True):
    _log(request, username, reason)
    metrics.recorder.auth_failure(metric_reason)
    error = exc.HTTPUnauthorized()
    if challenge:
        error.headers["WWW-Authenticate"] = REALM
    raise error


def _log(request, username, reason):
    security_log.warning("AuthFail: %s for user %r from %s on %s %s",
                         reason, username, client_address(request),
                         request.method, request.path_info)
