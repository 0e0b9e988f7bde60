"""Tokenserver 1.0: ``GET /1.0/sync/1.5`` trades a Mozilla-accounts access token for a Hawk token.

The order of the checks is syncstorage-rs's (reference §1): the
application and version first (404), then the ``Authorization: Bearer``
access token (401, or 503 when the accounts server cannot be asked), then
``X-KeyID`` / ``X-Client-State``, then the account's bookkeeping and the
server's policy (:meth:`~syncserver.tokenserver.users.TokenUserBackend.get_user`).
The answer (§1.9) carries a tokenlib token for the account's uid and node,
signed with the **first** ``global.master_secret`` (the storage nodes accept
any of them), its derived Hawk key, and ``api_endpoint`` =
``<node>/1.5/<uid>``. When the node list is empty this server is the node:
``tokenserver.node_url``, else the URL the client reached
(:func:`~syncserver.web.public_url.public_base_url`).

Refusals are :class:`~syncserver.tokenserver.errors.TokenserverError`\\s,
which the dispatcher renders (:mod:`syncserver.web.tokenserver_http`).
Nothing here logs a token, a key or the Authorization header; a policy
refusal goes to the security log with the FxA uid (an id, not a secret:
the operator needs it for ``tokenserver.allowed_fxa_uids``).
"""

import hashlib
import hmac
import logging
import re
import time

from syncserver.protocol.tokens import hash_device_id, hash_fxa_uid, make_token
from syncserver.tokenserver import errors
from syncserver.tokenserver.endpoints import api_endpoint, node_base_url
from syncserver.tokenserver.errors import AccessRefused
from syncserver.tokenserver.keyid import fxa_kid, parse_key_id
from syncserver.tokenserver.oauth import AccountsServerUnavailable, InvalidAccessToken
from syncserver.web.public_url import public_base_url
from syncserver.web.request_context import client_address
from syncserver.web.tokenserver_http import json_response

logger = logging.getLogger(__name__)
security_log = logging.getLogger("syncserver.security")

APPLICATION = "sync"
VERSION = "1.5"
_DURATION = re.compile(r"[0-9]{1,10}")
#: What the default metrics secret is derived with (HMAC-SHA256 keyed by the master secret).
_METRICS_SECRET_LABEL = b"syncserver/tokenserver/metrics_secret/v1"


def default_metrics_secret(master_secret):
    """A stable ``tokenserver.metrics_secret`` derived from the (first) master secret."""
    return hmac.new(master_secret.encode("utf-8"), _METRICS_SECRET_LABEL,
                    hashlib.sha256).hexdigest()


class TokenserverController:
    """Answers ``GET /1.0/<application>/<version>`` (and under ``/token``).

    ``verifier`` is the :class:`~syncserver.tokenserver.oauth.OAuthVerifier`,
    ``users`` the :class:`~syncserver.tokenserver.users.TokenUserBackend`,
    ``policy`` the :class:`~syncserver.tokenserver.policy.AccessPolicy`;
    ``node_type`` labels responses (None is sent as null).
    """

    def __init__(self, verifier, users, policy, settings, *, node_type=None):
        if not settings.global_.master_secret:
            raise ValueError("the tokenserver needs global.master_secret")
        tokenserver = settings.tokenserver
        self.verifier = verifier
        self.users = users
        self.policy = policy
        self.signing_secret = settings.global_.master_secret[0]
        self.metrics_secret = (tokenserver.metrics_secret
                               or default_metrics_secret(self.signing_secret))
        self.duration = tokenserver.duration
        self.node_url = tokenserver.node_url
        self.node_type = node_type
        self.global_settings = settings.global_
        self.retry_after = settings.global_.retry_after

    def get_token(self, request, application, version):
        """200 with a token (§1.9), or the protocol's refusal (§1.10)."""
        if application != APPLICATION:
            raise errors.unsupported_application()
        if version != VERSION:
            raise errors.unsupported_version(version)
        verified = self._verify(request)
        keys_changed_at, client_state = parse_key_id(
            request.headers.get("X-KeyID"), request.headers.get("X-Client-State"))
        try:
            user = self.users.get_user(verified.fxa_uid, verified.generation, keys_changed_at,
                                       client_state, self.policy)
        except AccessRefused as refusal:
            security_log.warning("TokenRefused: %s for fxa uid %s from %s", refusal.reason,
                                 verified.fxa_uid, client_address(request))
            raise
        duration = requested_duration(request, self.duration)
        node = node_base_url(user.node_url or self.node_url
                             or public_base_url(request, self.global_settings))
        hashed_fxa_uid = hash_fxa_uid(self.metrics_secret, verified.fxa_uid)
        payload = {
            "uid": user.uid,
            "node": node,
            "expires": int(time.time()) + duration,
            "fxa_uid": verified.fxa_uid,
            "fxa_kid": fxa_kid(user.keys_changed_at, user.generation, user.client_state),
            "hashed_fxa_uid": hashed_fxa_uid,
            "hashed_device_id": hash_device_id(self.metrics_secret, hashed_fxa_uid),
        }
        token_id, derived_key = make_token(payload, self.signing_secret)
        return json_response(200, {
            "id": token_id,
            "key": derived_key,
            "uid": user.uid,
            "api_endpoint": api_endpoint(node, user.uid),
            "duration": duration,
            "hashed_fxa_uid": hashed_fxa_uid,
            "hashalg": "sha256",
            "node_type": self.node_type,
        }, headers={"Cache-Control": "no-store"})

    def _verify(self, request):
        """The :class:`~syncserver.tokenserver.oauth.VerifiedAccessToken` of the request."""
        access_token = bearer_token(request.headers.get("Authorization"))
        try:
            return self.verifier.verify(access_token)
        except InvalidAccessToken as error:
            logger.info("tokenserver: access token refused from %s: %s",
                        client_address(request), error)
            raise errors.invalid_credentials() from None
        except AccountsServerUnavailable as error:
            logger.warning("tokenserver: %s", error)
            raise errors.accounts_unavailable(self.retry_after) from None


def bearer_token(header):
    """The token of ``Authorization: Bearer <token>``; raises the 401s of §1.2."""
    if header is None or not header.isascii():
        raise errors.unauthorized()
    scheme, space, token = header.partition(" ")
    if not space:
        raise errors.unauthorized()
    if scheme.lower() != "bearer":
        raise errors.unsupported_scheme()
    return token.strip()


def requested_duration(request, default):
    """``?duration=`` when it is a whole number from 1 to ``default``, else ``default``."""
    try:
        text = request.GET.get("duration")
    except UnicodeDecodeError:
        return default
    if text is None or not _DURATION.fullmatch(text):
        return default
    value = int(text)
    return value if 1 <= value <= default else default
