"""The request-target, host and port a Sync 1.5 client signed, behind any WSGI server or proxy.

Hawk signs the path and query **as the client sent them**, with the host and
port of the URL the client used (reference §2.3, SS-10). What the app sees
differs in three ways, each a classic cause of failed MACs:

- WSGI's ``PATH_INFO`` is percent-*decoded* (a record id ``{abc}`` arrives
  as ``{abc}``, but the client signed ``%7Babc%7D``), and WebOb's
  ``path_qs`` re-encodes it its own way. The raw request-target is in
  ``REQUEST_URI`` (mod_wsgi, uWSGI, waitress 3) or ``RAW_URI`` (gunicorn);
  only without either is the path rebuilt, encoded as desktop Firefox
  encodes record ids (``encodeURIComponent``), which is right for every id
  desktop sends but cannot restore a ``%2F`` that the server decoded.
- The app may be mounted under a prefix (``SCRIPT_NAME``, e.g. Apache
  ``WSGIScriptAlias /sync``), or a proxy may have stripped a prefix the
  client used. Both are covered the same way: the client signed the public
  URL's path prefix followed by the raw path *below* ``SCRIPT_NAME``.
- Host and port come from the configured public base URL, never from
  ``Host`` or ``X-Forwarded-*`` headers.
"""

import dataclasses
import re
from urllib.parse import quote, unquote_to_bytes, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
#: What ``encodeURIComponent`` leaves alone besides letters and digits ("/" separates segments).
_DESKTOP_SAFE = "/-_.!~*'()"
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclasses.dataclass(frozen=True)
class PublicURL:
    """A storage node's public base URL, split and normalized.

    ``host`` is lower-case (no IPv6 brackets), ``port`` always set,
    ``prefix`` the path without a trailing slash ("" at the root).
    """

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url):
        """Parse ``scheme://host[:port][/prefix]``; raises ValueError saying what is wrong."""
        if isinstance(url, cls):
            return url
        if not isinstance(url, str):
            raise ValueError(f"a public URL must be text, not {type(url).__name__}")
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"public URL {url!r}: the scheme must be http or https")
        if not parts.hostname:
            raise ValueError(f"public URL {url!r} has no host")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError(f"public URL {url!r}: no user, query or fragment allowed")
        port = parts.port  # ValueError for a port out of range or not a number
        return cls(scheme=scheme, host=parts.hostname.lower(),
                   port=DEFAULT_PORTS[scheme] if port is None else port,
                   prefix=parts.path.rstrip("/"))

    @property
    def base(self):
        """The normalized URL: no trailing slash, lower-case scheme and host, no default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.prefix}"


def normalize_base_url(url):
    """``"HTTPS://Sync.Example.com:443/sync/"`` -> ``"https://sync.example.com/sync"``.

    Raises ValueError for anything that is not an http(s) base URL.
    """
    return PublicURL.parse(url).base


def same_base_url(first, second):
    """True when both are the same public base URL once normalized (never raises)."""
    try:
        return PublicURL.parse(first).base == PublicURL.parse(second).base
    except ValueError:
        return False


def signed_request_target(environ, public_url):
    """The path and query the client signed: public prefix + raw path below SCRIPT_NAME + query."""
    public_url = PublicURL.parse(public_url)
    below = None
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        below = _raw_below_script_name(raw, environ.get("SCRIPT_NAME", ""))
    if below is None:
        below = _rebuilt_below_script_name(environ)
    return public_url.prefix + below


def _raw_below_script_name(raw, script_name):
    """The raw target without the mount prefix, or None if the raw target cannot be trusted."""
    if _ABSOLUTE_FORM.match(raw):
        parts = urlsplit(raw)
        raw = parts.path + ("?" + parts.query if parts.query else "")
    if not raw.startswith("/"):
        return None  # "*" or garbage: rebuild from PATH_INFO instead
    if not script_name:
        return raw
    path, question, query = raw.partition("?")
    segments = path.split("/")
    mounted = "/".join(segments[:script_name.count("/") + 1])
    if unquote_to_bytes(mounted).decode("latin-1") != script_name:
        return None  # the server rewrote the path; PATH_INFO is all we can go by
    return path[len(mounted):] + question + query


def _rebuilt_below_script_name(environ):
    # WSGI strings carry the request's bytes as latin-1.
    path = environ.get("PATH_INFO", "").encode("latin-1")
    query = environ.get("QUERY_STRING", "")
    return quote(path, safe=_DESKTOP_SAFE) + ("?" + query if query else "")
