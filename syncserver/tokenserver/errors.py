"""The tokenserver's refusals, each with the exact status and body of reference §1.10.

Every error a token request can end with is a :class:`TokenserverError`
carrying its HTTP status and its Cornice-style body
(``{"status": ..., "errors": [{"location", "name", "description"}]}``):
desktop Firefox reads ``status`` on a 401 and the Rust clients read the HTTP
status and ``Retry-After``, so both must be exactly what Mozilla's servers
send. The web layer renders them (:mod:`syncserver.web.tokenserver_http`);
this module knows no HTTP library, so the user bookkeeping can raise them.
"""

from syncserver.errors import PolicyRefusal


class TokenserverError(Exception):
    """A token request refused with ``http_status`` and the body of :meth:`body`.

    ``headers`` are extra response headers (``Retry-After`` on a 503).
    """

    def __init__(self, http_status, status, location="body", name="",
                 description="Unauthorized", headers=None):
        super().__init__(f"{http_status} {status}: {description}")
        self.http_status = http_status
        self.status = status
        self.location = location
        self.name = name
        self.description = description
        self.headers = dict(headers or {})

    def body(self):
        """The JSON-ready body: ``{"status", "errors": [{"location", "name", "description"}]}``."""
        return {"status": self.status, "errors": [
            {"location": self.location, "name": self.name, "description": self.description}]}


class AccessRefused(TokenserverError, PolicyRefusal):
    """The server's policy refuses this account (401 ``new-users-disabled``).

    ``reason`` says which rule refused, for the security log only: the
    client always gets the same body, so it learns nothing about the rules.
    """

    def __init__(self, reason):
        super().__init__(401, "new-users-disabled")
        self.reason = reason


def unauthorized():
    """No usable ``Authorization`` header (missing, no space, not ASCII)."""
    return TokenserverError(401, "error")


def unsupported_scheme():
    """An ``Authorization`` scheme other than Bearer (legacy BrowserID, Basic...)."""
    return TokenserverError(401, "error", description="Unsupported")


def invalid_credentials():
    """The access token, or the X-KeyID, is not valid."""
    return TokenserverError(401, "invalid-credentials")


def missing_key_id():
    return TokenserverError(401, "invalid-key-id", location="header",
                            description="Missing X-KeyID header")


def invalid_client_state_header():
    """``X-Client-State`` fails ``^[a-zA-Z0-9._-]{1,32}$``."""
    return TokenserverError(400, "error", location="header", name="X-Client-State",
                            description="Invalid client state value")


def client_state_mismatch():
    """``X-Client-State`` differs from the fingerprint in ``X-KeyID``."""
    return TokenserverError(401, "invalid-client-state")


def unacceptable_client_state(why):
    """Rules D2-D5: ``why`` is "empty string", "stale value", "new value with no ... change"."""
    return TokenserverError(401, "invalid-client-state", location="header",
                            name="X-Client-State",
                            description=f"Unacceptable client-state value {why}")


def invalid_generation():
    return TokenserverError(401, "invalid-generation")


def invalid_keys_changed_at():
    return TokenserverError(401, "invalid-keysChangedAt")


def unsupported_application():
    return TokenserverError(404, "error", location="url", name="application",
                            description="Unsupported application")


def unsupported_version(version):
    return TokenserverError(404, "error", location="url", name=version,
                            description="Unsupported application version")


def not_found():
    """A path under the tokenserver's prefixes that names nothing."""
    return TokenserverError(404, "error", location="url", description="Not Found")


def method_not_allowed(allowed):
    return TokenserverError(405, "error", location="url", description="Method Not Allowed",
                            headers={"Allow": ", ".join(allowed)})


def server_error(retry_after=None, http_status=503):
    """No node can take the user (503); a retired user whose node is gone (500)."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return TokenserverError(http_status, "internal-error", location="internal",
                            description="Server error", headers=headers)


def accounts_unavailable(retry_after):
    """The accounts server did not answer: 503, never 401 (desktop would ask to sign in again)."""
    return TokenserverError(503, "error", description="Resource is not available",
                            headers={"Retry-After": str(retry_after)})
