"""Weave error codes and the error responses that carry them.

A 400 with a code has ``Content-Type: application/json`` and the bare integer
as its body, e.g. ``8``. Clients switch on that number. Storage 1.5 gives
every error such a body (``0`` when no code applies), whatever its status:
:func:`error_with_code` builds those.
"""

from webob import exc

ILLEGAL_METHOD = 1
INVALID_CAPTCHA = 2
INVALID_USERNAME = 3
OVERWRITE_NOT_ALLOWED = 4
USERID_PATH_MISMATCH = 5
JSON_PARSE_FAILURE = 6
MISSING_PASSWORD = 7
INVALID_WBO = 8
WEAK_PASSWORD = 9
INVALID_RESET_CODE = 10
UNSUPPORTED_FUNCTION = 11
NO_EMAIL_ADDRESS = 12
INVALID_COLLECTION = 13
OVER_QUOTA = 14
EMAIL_USERNAME_MISMATCH = 15
CLIENT_UPGRADE_REQUIRED = 16
SIZE_LIMIT_EXCEEDED = 17

#: Storage 1.5: the body of an error for which no code applies.
NO_CODE = 0
#: Storage 1.5: a bad query or header value (the Python server's choice, reference §3.13).
BAD_VALUE = ILLEGAL_METHOD


class WeaveError(exc.HTTPBadRequest):
    """A 400 whose JSON body is a Weave error code.

    Raise it from a controller: ``raise WeaveError(respcodes.INVALID_WBO)``.
    """

    def __init__(self, code, status=400):
        super().__init__()
        self.weave_code = code
        if status != 400:
            self.status = status
        self.content_type = "application/json"
        self.charset = None
        self.body = str(code).encode("ascii")

    def __call__(self, environ, start_response):
        # Skip WebOb's HTML/plain error page generation: the body is the code.
        return super(exc.WSGIHTTPException, self).__call__(environ, start_response)


def error_with_code(code, error_class=exc.HTTPBadRequest):
    """An instance of the WebOb error ``error_class`` whose JSON body is ``code``.

    ``error_with_code(17, exc.HTTPRequestEntityTooLarge)`` is a 413 with body
    ``17``; it stays an instance of its WebOb class, so callers can catch it
    by status. The body being set, WebOb serves it instead of an error page.
    """
    error = error_class()
    error.weave_code = code
    error.content_type = "application/json"
    error.charset = None
    error.body = str(code).encode("ascii")
    return error
