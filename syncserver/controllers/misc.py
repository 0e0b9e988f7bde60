"""Operational endpoints: the heartbeat that load balancers and monitors poll."""

import json

from webob import Response


class MiscController:
    """Answers ``/__heartbeat__``: 200 when every backend answers a real query, else 503."""

    def __init__(self, storage, auth):
        self.checks = {"storage": storage.is_healthy, "auth": auth.is_healthy}

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
