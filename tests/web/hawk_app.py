"""A WSGI app that only verifies Hawk, so that tests can put real WSGI servers in front of it.

It answers 200 with the token's uid, or 401 with the reason, and always the
request-target it computed (for the test's eyes only; the real app says
``0``). gunicorn loads ``app``, configured by ``HAWK_TEST_NODE`` and
``HAWK_TEST_SECRET``.
"""

import json
import os

import webob

from syncserver.web.hawk import HawkAuthError, HawkVerifier
from syncserver.web.nonces import MemoryNonceCache
from syncserver.web.request_target import signed_request_target


def make_app(node, secret):
    verifier = HawkVerifier([secret], node, MemoryNonceCache())

    def app(environ, start_response):
        request = webob.Request(environ)
        answer = {"target": signed_request_target(environ, node)}
        try:
            answer["uid"] = verifier.verify(request).uid
            status = "200 OK"
        except HawkAuthError as error:
            answer["reason"] = error.reason
            status = "401 Unauthorized"
        body = json.dumps(answer).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))])
        return [body]

    return app


def _from_environment(environ, start_response):
    global _configured
    if _configured is None:
        _configured = make_app(os.environ["HAWK_TEST_NODE"], os.environ["HAWK_TEST_SECRET"])
    return _configured(environ, start_response)


_configured = None
app = _from_environment
