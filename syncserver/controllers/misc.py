"""Endpoints outside the two APIs: the heartbeat monitors poll, the captcha widget page."""

import json

from webob import Response, exc


class MiscController:
    """``/__heartbeat__`` (see :mod:`syncserver.health`) and ``/misc/1.0/captcha_html``."""

    def __init__(self, heartbeat, captcha=None, serves=None):
        self.heartbeat_checks = heartbeat
        self.captcha = captcha
        #: The APIs this process serves (its shape), reported with the checks.
        self.serves = list(serves) if serves is not None else None

    def heartbeat(self, request):
        """200 with ``ok`` or ``degraded``, 503 when a service needed for syncs is down."""
        status, report = self.heartbeat_checks.report()
        if self.serves is not None:
            report = {**report, "serves": self.serves}
        return Response(json.dumps(report).encode("ascii"), status=status,
                        content_type="application/json", charset=None,
                        cache_control="no-store")

    def captcha_html(self, request):
        """The captcha widget page (reference §3.12); 404 when no captcha is configured."""
        if self.captcha is None:
            raise exc.HTTPNotFound("No captcha configured")
        return Response(self.captcha.html(), content_type="text/html", charset="UTF-8")
