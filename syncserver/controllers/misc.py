"""Endpoints outside the two APIs: the heartbeat monitors poll, the captcha widget page."""

import json

from webob import Response, exc


class MiscController:
    """``/__heartbeat__`` (200 when every backend answers a real query, else 503) and
    ``/misc/1.0/captcha_html``."""

    def __init__(self, storage, auth, captcha=None):
        self.checks = {"storage": storage.is_healthy, "auth": auth.is_healthy}
        self.captcha = captcha

    def heartbeat(self, request):
        report = {}
        for name, check in self.checks.items():
            try:
                report[name] = "ok" if check() else "unavailable"
            except Exception:
                report[name] = "unavailable"
        healthy = all(state == "ok" for state in report.values())
        report["status"] = "ok" if healthy else "unavailable"
        return Response(json.dumps(report).encode("ascii"), status=200 if healthy else 503,
                        content_type="application/json", charset=None)

    def captcha_html(self, request):
        """The captcha widget page (reference §3.12); 404 when no captcha is configured."""
        if self.captcha is None:
            raise exc.HTTPNotFound("No captcha configured")
        return Response(self.captcha.html(), content_type="text/html", charset="UTF-8")
