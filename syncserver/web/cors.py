"""Cross-origin access to the Sync 1.5 API for the web pages an operator allows (CORS).

Firefox itself never needs it; a web application (a sync dashboard, a
web-extension page) served from another origin does. Only origins listed in
``storage15.cors_origins`` (or ``*``) are answered with CORS headers; any
other origin gets none, so the browser keeps the answer from the page. The
API authenticates with an explicit ``Authorization`` header, never cookies,
so credentials are never allowed.
"""

from webob import Response

#: Methods of the 1.5 API.
ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
#: Request headers a client of the 1.5 API sends.
ALLOWED_HEADERS = ("Authorization, Content-Type, X-If-Modified-Since, X-If-Unmodified-Since, "
                   "X-Weave-Records, X-Weave-Bytes, X-Weave-Total-Records, X-Weave-Total-Bytes, "
                   "X-Confirm-Delete")
#: Response headers a page may read.
EXPOSED_HEADERS = ("X-Weave-Timestamp, X-Last-Modified, X-Weave-Records, X-Weave-Next-Offset, "
                   "X-Weave-Quota-Remaining, X-Weave-Backoff, X-Weave-Alert, Retry-After")
#: Seconds a browser may remember a preflight answer.
PREFLIGHT_MAX_AGE = 86400


class CORSPolicy:
    """The allowed origins; :meth:`preflight` answers OPTIONS, :meth:`decorate` the rest."""

    def __init__(self, origins):
        self.any_origin = "*" in origins
        self.origins = frozenset(origin.rstrip("/").lower() for origin in origins)

    def allowed(self, origin):
        """True when a page of ``origin`` may read the API's answers."""
        if not origin:
            return False
        return self.any_origin or origin.rstrip("/").lower() in self.origins

    def preflight(self, request):
        """The answer to an ``OPTIONS`` preflight: 204, with CORS headers when allowed."""
        response = Response(status=204)
        origin = request.headers.get("Origin")
        response.headers["Vary"] = "Origin"
        if self.allowed(origin):
            response.headers.update({
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            })
        return response

    def decorate(self, request, response):
        """Add the CORS headers to an actual answer (errors included) for an allowed origin."""
        origin = request.headers.get("Origin")
        if not origin:
            return
        response.headers.add("Vary", "Origin")
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
