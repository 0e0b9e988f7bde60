"""The server's public address, as clients must see it in node URLs and e-mailed links.

A node URL goes back to the client that asked, so it may follow the request
(its ``Host``, or the forwarded headers of a trusted proxy). A link that is
**mailed** goes to someone else: built from an unauthenticated request's
``Host``, anyone could have a victim mailed a valid reset key inside a link
to their own site. So :func:`mail_base_url` takes ``global.public_url``
verbatim, or the request's host only when ``global.allowed_hosts`` names it,
and nothing otherwise.

Every host read from a request is checked to be a host name or address with
an optional port: ``evil.example/x?y=`` or two ``Host`` headers joined by
the WSGI server (``a.example, b.example``) are a 400, never part of a URL.
"""

import logging
from urllib.parse import quote

from webob import exc

from syncserver.web.proxies import HOST_RE, forwarded_origin
from syncserver.web.request_context import client_address

security_log = logging.getLogger("syncserver.security")


class MailBaseUnknown(Exception):
    """Neither ``global.public_url`` nor ``global.allowed_hosts`` vouches for a mailed link.

    ``host`` is the host the request named (already known to be well formed).
    """

    def __init__(self, host):
        super().__init__(host)
        self.host = host


def public_base_url(request, global_settings):
    """The URL clients reach this application at, without a trailing slash.

    In order of precedence: ``global.public_url`` verbatim (it names the
    prefix too); else the request's own scheme, host and path prefix
    (``SCRIPT_NAME``), each replaced by ``X-Forwarded-Proto``,
    ``X-Forwarded-Host`` and ``X-Forwarded-Prefix`` (which goes before
    ``SCRIPT_NAME``) when a trusted proxy sent them. A malformed host is a
    400 (:class:`webob.exc.HTTPBadRequest`).
    """
    if global_settings.public_url:
        return global_settings.public_url.rstrip("/")
    return _request_base_url(request, global_settings)[0]


def mail_base_url(request, global_settings):
    """The base URL of a link mailed to an account (password reset), without a trailing slash.

    ``global.public_url`` when set; else the request's URL if its host is in
    ``global.allowed_hosts``. Raises :class:`MailBaseUnknown` (and logs a
    security warning) otherwise, and a 400 for a malformed host.
    """
    if global_settings.public_url:
        return global_settings.public_url.rstrip("/")
    url, host = _request_base_url(request, global_settings)
    if not host_allowed(host, global_settings.allowed_hosts):
        security_log.warning(
            "MailLinkRefused: no mail with a link to host %r from %s (global.public_url is "
            "unset and global.allowed_hosts does not list it)", host, client_address(request))
        raise MailBaseUnknown(host)
    return url


def host_allowed(host, allowed_hosts):
    """True when ``host`` (``name[:port]``) matches an entry of ``allowed_hosts``.

    An entry without a port allows the name on any port; names compare
    case-insensitively, IPv6 addresses with or without brackets.
    """
    name, port = split_host(host)
    for entry in allowed_hosts:
        allowed_name, allowed_port = split_host(entry)
        if allowed_name == name and allowed_port in (None, port):
            return True
    return False


def split_host(host):
    """``'Example.org:8443'`` -> ``('example.org', '8443')``; ``'[::1]'`` -> ``('::1', None)``."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return name, port or None
    if host.count(":") > 1:  # a bare IPv6 address, as an entry may be written
        return host, None
    name, _, port = host.partition(":")
    return name, port or None


def _request_base_url(request, global_settings):
    """``(url, host)`` from the request and trusted forwarded headers; 400 for a bad host."""
    scheme, host, prefix = forwarded_origin(request.environ, global_settings.trusted_proxies)
    own_host = _checked_host(request.host) if host is None else None
    if scheme is None and host is None and prefix is None:
        return (request.application_url.rstrip("/"),
                _without_default_port(own_host, request.scheme))
    scheme = scheme or request.scheme
    if host is None:
        host = own_host
        if scheme != request.scheme:
            host = _without_default_port(host, request.scheme)
    host = _without_default_port(host, scheme)
    path = (prefix or "").rstrip("/") + quote(request.script_name.rstrip("/"))
    return f"{scheme}://{host}{path}", host


def _checked_host(host):
    if not HOST_RE.fullmatch(host):
        raise exc.HTTPBadRequest("The Host header must name one host (a name or an address, "
                                 "with an optional port).")
    return host


def _without_default_port(host, scheme):
    default = ":443" if scheme == "https" else ":80"
    return host[:-len(default)] if host.endswith(default) else host
