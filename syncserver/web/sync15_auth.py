"""Who a Sync 1.5 storage request is: its Hawk-signed token, for the uid in its path.

The second authentication scheme of the web layer, beside HTTP Basic
(:mod:`syncserver.web.basic_auth`) for Sync 1.1. The dispatcher calls
:meth:`Sync15Authenticator.authenticate` for every route marked
:data:`~syncserver.routing.HAWK`; it verifies the request with
:class:`~syncserver.web.hawk.HawkVerifier` against this node's public URL
*as the client reached it* (``global.public_url``, else the request's own,
through trusted proxies: :func:`~syncserver.web.public_url.public_base_url`),
lets an expired token read ``info/collections`` for
``storage15.expired_token_seconds``, and requires the token's uid to be the
path's. Any failure is a 401 with body ``0`` (and the stale-timestamp
challenge when the clock is off); a nonce store that is down is a 503.
"""

import collections
import threading

from webob import exc

from syncserver.web.hawk import HawkAuthError, HawkVerifier, require_uid
from syncserver.web.public_url import public_base_url

#: Verifiers kept per public URL (one in a fixed deployment; bounded against forged hosts).
MAX_VERIFIERS = 32


class Sync15Authenticator:
    """Built once per process; thread-safe.

    ``secrets``: ``global.master_secret`` (first signs, all verify);
    ``nonce_cache``: a :class:`~syncserver.web.nonces.NonceCache`;
    ``global_settings``: for the public URL; ``max_body_bytes``: a body
    larger than this is refused (413) before a payload hash would read it.
    """

    def __init__(self, secrets, nonce_cache, global_settings, skew_seconds,
                 expired_token_seconds, max_body_bytes):
        self.secrets = list(secrets)
        self.nonce_cache = nonce_cache
        self.global_settings = global_settings
        self.skew_seconds = skew_seconds
        self.expired_token_seconds = expired_token_seconds
        self.max_body_bytes = max_body_bytes
        self._verifiers = collections.OrderedDict()
        self._lock = threading.Lock()

    def authenticate(self, request, route, uid):
        """The verified :class:`~syncserver.protocol.tokens.Token`; raises a 401 otherwise."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise _too_large()
        grace = self.expired_token_seconds if _reads_info_collections(route) else 0
        try:
            verifier = self._verifier(public_base_url(request, self.global_settings))
            token = verifier.verify(request, allow_expired_seconds=grace)
            require_uid(token, uid, request.environ)
        except HawkAuthError as error:
            raise _unauthorized(error) from None
        return token

    def _verifier(self, public_url):
        with self._lock:
            verifier = self._verifiers.get(public_url)
            if verifier is not None:
                self._verifiers.move_to_end(public_url)
                return verifier
        try:
            verifier = HawkVerifier(self.secrets, public_url, self.nonce_cache,
                                    skew_seconds=self.skew_seconds)
        except ValueError:
            raise HawkAuthError("the request's public URL is not usable") from None
        with self._lock:
            self._verifiers[public_url] = verifier
            while len(self._verifiers) > MAX_VERIFIERS:
                self._verifiers.popitem(last=False)
        return verifier


def _reads_info_collections(route):
    """Only ``GET /1.5/{uid}/info/collections`` takes an expired token (reference §2.2)."""
    return route.method == "GET" and route.action == "get_collection_timestamps"


def _unauthorized(error):
    response = exc.HTTPUnauthorized()
    response.content_type = "application/json"
    response.charset = None
    response.body = b"0"
    response.headers["WWW-Authenticate"] = error.www_authenticate or "Hawk"
    return response


def _too_large():
    response = exc.HTTPRequestEntityTooLarge()
    response.content_type = "application/json"
    response.charset = None
    response.body = b"17"
    return response
