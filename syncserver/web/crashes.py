"""Turning failures into protocol answers that never leak internals.

A backend that is down gives 503 with ``Retry-After``; any other bug gives
500. Both bodies are a JSON string naming a crash id, and the same id goes
to the log with the traceback (and as the ``crash_id`` field of the record,
for :class:`syncserver.logfmt.JSONFormatter`), so an operator can find the
one from the other. Request bodies, passwords and the Authorization header never reach
the log.
"""

import logging
import secrets

from webob import Response

logger = logging.getLogger("syncserver")


def crash_response(request, status, error, retry_after=None):
    """Log ``error`` with a fresh crash id and return the JSON error response."""
    crash_id = secrets.token_hex(16)
    user = getattr(request, "sync_user", None)
    logger.error(
        "crash id %s: %s %s%s -> %d: %s: %s",
        crash_id, request.method, request.path_info,
        f" (user id {user.user_id})" if user else "", status,
        type(error).__name__, _describe(error),
        exc_info=(type(error), error, error.__traceback__),
        extra={"crash_id": crash_id, "status": status})
    body = f'"application error: crash id {crash_id}"'.encode("ascii")
    response = Response(status=status, body=body, content_type="application/json", charset=None)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _describe(error):
    # repr() of the arguments, not str(): user data is logged escaped, never verbatim.
    return repr(error.args[0])[:300] if getattr(error, "args", None) else ""
