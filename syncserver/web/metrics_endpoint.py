"""The metrics page (``metrics.path``), visible only to the scrapers allowed to read it.

Anyone else gets the very 404 an unknown path gets, so the page cannot be
found by probing. A scraper is allowed when the client's address (as trusted
proxies report it, see :mod:`syncserver.web.proxies`) is in
``metrics.allowed_addresses`` and, when ``metrics.token`` is set, it sends
``Authorization: Bearer <token>``.
"""

import hmac
import ipaddress

from webob import Response, exc

from syncserver.web.request_context import client_address


class MetricsEndpoint:
    """Serves ``recorder.exposition()`` at ``settings.path`` (a :class:`MetricsSettings`)."""

    def __init__(self, recorder, settings):
        self.recorder = recorder
        self.path = settings.path.rstrip("/") or "/"
        self.allowed_networks = settings.allowed_addresses
        self._token = settings.token.encode("utf-8") if settings.token else None

    def serve(self, request):
        """The metrics as Prometheus text; an ordinary 404 for anyone not allowed."""
        if not self.allows(request):
            raise exc.HTTPNotFound()
        from syncserver.metrics.prometheus import CONTENT_TYPE

        response = Response(body=self.recorder.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        response.cache_control = "no-store"
        return response

    def allows(self, request):
        if not _in_networks(client_address(request), self.allowed_networks):
            return False
        if self._token is None:
            return True
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "surrogateescape"), self._token)


def _in_networks(address, networks):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
