"""The tokenserver's responses: JSON bodies, ``X-Timestamp`` and ``nosniff`` on every one.

Desktop Firefox rejects any token response that is not JSON as
``malformed-response`` (it then never reads the status), and the Rust
clients fail a 200 without ``X-Timestamp`` (reference §1.1, §1.9). So
every answer under the tokenserver's paths, errors of the routing (404,
405) and crashes (500, 503) included, has a JSON body in the Cornice shape
of §1.10, ``X-Timestamp`` in whole seconds, ``X-Content-Type-Options:
nosniff``, and every 503 has ``Retry-After``. The dispatcher calls
:func:`is_tokenserver_path` once per request and the rest on the way out.

The tokenserver's paths are ``/token/...`` and ``/1.0/<application>/<version>``
with a version that starts with a digit, plus anything else directly under
``/1.0/sync``, except ``/1.0/sync/storage``, which is a Sync 1.1 path for a
user named "sync".
"""

import json
import re
import time

from webob import Response

from syncserver.tokenserver.errors import TokenserverError, method_not_allowed, not_found

_TOKENSERVER_PATH = re.compile(
    r"/token(?:/.*)?|/1\.0/sync(?:/(?!storage$)[^/]*)?|/1\.0/[^/]+/[0-9][^/]*")


def is_tokenserver_path(path):
    """True for paths whose answers follow the tokenserver's rules (see the module docstring)."""
    return bool(_TOKENSERVER_PATH.fullmatch(path.rstrip("/") or "/"))


def json_response(status, body, headers=None):
    """A JSON response (``application/json``, no charset parameter)."""
    response = Response(status=status, body=json.dumps(body).encode("utf-8"),
                        content_type="application/json", charset=None)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(error):
    """The response of a :class:`TokenserverError`: its status, body and headers."""
    return json_response(error.http_status, error.body(), error.headers)


def from_http_error(error):
    """A WebOb error of the routing (404 unknown path, 405) in the tokenserver's shape."""
    if error.code == 405:
        allowed = [method.strip() for method in error.headers.get("Allow", "").split(",")
                   if method.strip()]
        return error_response(method_not_allowed(allowed))
    if error.code == 404:
        return error_response(not_found())
    generic = TokenserverError(error.code, "error", location="body",
                               description=error.title)
    return error_response(generic)


def from_crash(response):
    """A crash answer (500, or 503 for a backend down) in the tokenserver's shape.

    The crash id the dispatcher logged stays in the description, so an
    operator can find the traceback from a client's report.
    """
    try:
        description = json.loads(response.body)
    except ValueError:
        description = None
    if not isinstance(description, str):
        description = "Server error"
    crashed = TokenserverError(response.status_code, "internal-error", location="internal",
                               description=description)
    converted = error_response(crashed)
    if "Retry-After" in response.headers:
        converted.headers["Retry-After"] = response.headers["Retry-After"]
    return converted


def finish(response, retry_after):
    """Every tokenserver response: ``X-Timestamp``, ``nosniff``, and ``Retry-After`` on a 503."""
    response.headers["X-Timestamp"] = str(int(time.time()))
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.status_code == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(retry_after)
    return response
