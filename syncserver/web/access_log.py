"""Access log: one line per request on the ``syncserver.access`` logger.

A WSGI middleware, so it sees what the client got, whatever answered (a
controller, an error page, a crash). The line is written when the server
closes the response, so the size and duration include streaming the body.

Two formats: Apache's *combined* format followed by the duration in
milliseconds, or one JSON object per line for log collectors. The
Authorization header, passwords and secret-looking query values are never
written; the username (which is in the URL anyway) is.
"""

import json
import logging
import re
import time
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, urlencode

from syncserver.web.proxies import client_address
from syncserver.web.request_context import USERNAME_KEY

access_log = logging.getLogger("syncserver.access")

#: Query parameters whose values are replaced by ``redacted`` in the log.
_SECRET_PARAMETER = re.compile(r"pass|secret|token|key|auth", re.IGNORECASE)
_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f-\xff"\\]')


class AccessLogMiddleware:
    """Wraps a WSGI app and logs each request it answers."""

    def __init__(self, app, log_format="combined", trusted_proxies=()):
        self.app = app
        self.format_line = _json_line if log_format == "json" else _combined_line
        self.trusted_proxies = trusted_proxies

    def __call__(self, environ, start_response):
        if not access_log.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        record = _Record(environ, time.time(), time.perf_counter())

        def recording_start_response(status, headers, exc_info=None):
            record.status = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except Exception:
            record.status = "500"
            self._write(record)
            raise
        return _LoggedBody(body, record, self._write)

    def _write(self, record):
        record.duration_ms = (time.perf_counter() - record.started) * 1000.0
        record.client = client_address(record.environ, self.trusted_proxies)
        record.user = record.environ.get(USERNAME_KEY)
        access_log.info("%s", self.format_line(record))

    def close(self):
        """Let ``close()`` reach the application (tests and clean shutdowns)."""
        close = getattr(self.app, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name):
        # The wrapped app's attributes (settings, storage...) stay reachable.
        if name == "app":
            raise AttributeError(name)
        return getattr(self.app, name)


class _Record:
    """What one line needs, filled in as the request goes."""

    def __init__(self, environ, wall_clock, started):
        self.environ = environ
        self.wall_clock = wall_clock
        self.started = started
        self.status = "-"
        self.bytes_sent = 0
        self.duration_ms = 0.0
        self.client = "-"
        self.user = None


class _LoggedBody:
    """The response body, counted as the server sends it; logs the request on close()."""

    def __init__(self, body, record, write):
        self.body = body
        self.record = record
        self.write = write

    def __iter__(self):
        for chunk in self.body:
            self.record.bytes_sent += len(chunk)
            yield chunk

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.write(self.record)


def request_target(environ):
    """Path and query as requested, with secret-looking query values redacted."""
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                 safe="/:@!$&'()*+,;=~")
    query = environ.get("QUERY_STRING", "")
    if query and _SECRET_PARAMETER.search(query):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, "redacted" if _SECRET_PARAMETER.search(name) else value)
                           for name, value in pairs])
    return path + ("?" + query if query else "")


def _combined_line(record):
    environ = record.environ
    when = datetime.fromtimestamp(record.wall_clock).astimezone()
    request_line = " ".join((environ.get("REQUEST_METHOD", "-"), request_target(environ),
                             environ.get("SERVER_PROTOCOL", "-")))
    return '%s - %s [%s] "%s" %s %s "%s" "%s" %.1f' % (
        record.client, _escape(record.user or "-"),
        when.strftime("%d/%b/%Y:%H:%M:%S %z"), _escape(request_line), record.status,
        record.bytes_sent or "-", _escape(environ.get("HTTP_REFERER", "-")),
        _escape(environ.get("HTTP_USER_AGENT", "-")), record.duration_ms)


def _json_line(record):
    environ = record.environ
    when = datetime.fromtimestamp(record.wall_clock, tz=timezone.utc)
    return json.dumps({
        "time": when.isoformat(timespec="milliseconds"),
        "client": record.client,
        "user": record.user,
        "method": environ.get("REQUEST_METHOD"),
        "path": request_target(environ),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "status": int(record.status) if record.status.isdigit() else None,
        "bytes": record.bytes_sent,
        "referer": environ.get("HTTP_REFERER"),
        "user_agent": environ.get("HTTP_USER_AGENT"),
        "duration_ms": round(record.duration_ms, 1),
    }, ensure_ascii=False)


def _escape(text):
    """Quotes, backslashes and control characters as ``\\xhh``, as Apache writes them."""
    return _UNPRINTABLE.sub(lambda match: "\\x%02x" % ord(match.group()), text)
