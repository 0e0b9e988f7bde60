"""How each API family's answers look when something goes wrong, and what all of them carry.

Sync 1.1 and the HTML pages answer WebOb errors with plain text (a JSON
object would be taken for a Weave error code); Storage 1.5 answers every
error with a JSON integer (reference §3.13) and adds CORS headers for the
origins allowed; the tokenserver answers in its own JSON shape with
``X-Timestamp`` (:mod:`syncserver.web.tokenserver_http`). The dispatcher
picks one style per request from its path and asks it three things: the
answer to a WebOb error, the answer to a crash (a 500, or a 503 for a
backend that is down), and what to add to every answer on the way out.
"""

from syncserver.web import tokenserver_http


class Sync11Style:
    """Sync 1.1, the User API, the pages and the rest: plain-text error pages."""

    def http_error(self, error, environ):
        """WebOb errors without a body of their own get a plain-text page, whatever Accept says.

        (WebOb would negotiate a JSON object, which clients mistake for a Weave code.)
        """
        if not error.has_body and not error.empty_body:
            text = error.plain_body(environ)
            error.content_type = "text/plain"
            error.charset = "UTF-8"
            error.text = text
        return error

    def crash(self, response):
        return response

    def finish(self, request, response):
        pass


class Sync15Style:
    """Storage 1.5: a JSON integer body on every error (``0`` unless it carries a code)."""

    def __init__(self, cors=None):
        self.cors = cors

    def http_error(self, error, environ):
        if getattr(error, "weave_code", None) is None and not error.empty_body:
            error.content_type = "application/json"
            error.charset = None
            error.body = b"0"
        return error

    def crash(self, response):
        return response  # already a JSON string naming the crash id

    def finish(self, request, response):
        if self.cors is not None:
            self.cors.decorate(request, response)


class TokenserverStyle:
    """The tokenserver: Cornice-style JSON errors, ``X-Timestamp`` and ``nosniff`` always."""

    def __init__(self, retry_after):
        self.retry_after = retry_after

    def http_error(self, error, environ):
        return tokenserver_http.from_http_error(error)

    def crash(self, response):
        return tokenserver_http.from_crash(response)

    def finish(self, request, response):
        tokenserver_http.finish(response, self.retry_after)


def is_sync15_path(path):
    """Paths of the 1.5 API, also those that match no route (their 404 is JSON too)."""
    return path == "/1.5" or path.startswith("/1.5/")
