"""Which ``X-Forwarded-*`` headers to believe: only those a trusted proxy sent.

Anyone can send ``X-Forwarded-For: 127.0.0.1`` or ``X-Forwarded-Host:
evil.example``; a reverse proxy in front of the server overwrites or appends
them. So they count only when the peer (``REMOTE_ADDR``) is one of
``global.trusted_proxies``; otherwise the connection itself is the truth.
"""

import ipaddress
import re

#: What a host (and port) may look like in a node URL; anything else is ignored.
HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
#: A path prefix: slash-separated URL-safe segments.
_PREFIX_RE = re.compile(r"(?:/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*/?")


def is_trusted(address, trusted_proxies):
    """True when ``address`` (text) is inside one of the ``trusted_proxies`` networks."""
    if not trusted_proxies or not address:
        return False
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in trusted_proxies)


def forwarded_by_trusted_proxy(environ, trusted_proxies):
    """True when this request came through a proxy whose headers we believe."""
    return is_trusted(environ.get("REMOTE_ADDR"), trusted_proxies)


def client_address(environ, trusted_proxies):
    """The client's IP address, as far back as trusted proxies vouch for it.

    ``X-Forwarded-For`` lists the hops, each proxy appending the peer it saw:
    reading right to left, the first address that is not a trusted proxy is
    the client (the left part can be forged by the client itself).
    """
    peer = environ.get("REMOTE_ADDR") or "-"
    if not is_trusted(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    address = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage: stop at the last address a trusted proxy vouched for
        address = hop
        if not is_trusted(hop, trusted_proxies):
            break
    return address


def forwarded_origin(environ, trusted_proxies):
    """``(scheme, host, prefix)`` from trusted forwarded headers; None for each one absent.

    Only the first value of a comma-separated header counts (the outermost
    proxy's), and values that could not be part of a URL are ignored.
    """
    if not forwarded_by_trusted_proxy(environ, trusted_proxies):
        return None, None, None
    scheme = _first(environ.get("HTTP_X_FORWARDED_PROTO")).lower() or None
    if scheme not in ("http", "https"):
        scheme = None
    host = _first(environ.get("HTTP_X_FORWARDED_HOST")) or None
    if host is not None and not HOST_RE.fullmatch(host):
        host = None
    prefix = _first(environ.get("HTTP_X_FORWARDED_PREFIX")) or None
    if prefix is not None and not (prefix.startswith("/") and _PREFIX_RE.fullmatch(prefix)):
        prefix = None
    return scheme, host, prefix


def _first(value):
    return (value or "").split(",")[0].strip()
