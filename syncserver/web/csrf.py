"""Cross-site request forgery protection for the HTML forms.

No sessions exist here, so the forms use a signed double-submit token:

- every page carries a random value in a ``SameSite=Strict``, ``HttpOnly``
  cookie (``__Host-`` prefixed over HTTPS, so a sibling subdomain cannot
  plant one), and the form carries ``HMAC(secret, cookie value)``;
- a POST is accepted only when the form token matches the cookie, and when
  its ``Origin`` (or, without one, its ``Referer``) is this server.

A page from another site can neither read the cookie nor send it
(SameSite), so it cannot produce a matching pair. The secret is
``pages.csrf_secret``, else one derived from ``global.shared_secret``; with
neither, the HMAC key is empty and the protection rests on the cookie,
SameSite and the origin check alone (still sound, since every process
agrees on the key).
"""

import hashlib
import hmac
import logging
import secrets
import urllib.parse

from webob import exc

from syncserver.web.request_context import client_address

security_log = logging.getLogger("syncserver.security")

FIELD = "csrf_token"
_COOKIE = "syncserver_csrf"


def derive_secret(pages_settings, global_settings):
    """The HMAC key from the settings; see the module docstring."""
    if pages_settings.csrf_secret:
        return pages_settings.csrf_secret.encode("utf-8")
    if global_settings.shared_secret:
        # Derived, so a leaked CSRF key never reveals the shared secret itself.
        return hmac.new(global_settings.shared_secret.encode("utf-8"),
                        b"syncserver pages csrf", hashlib.sha256).digest()
    return b""


class CSRFGuard:
    """Issues form tokens and checks submitted forms against them."""

    def __init__(self, secret):
        self._secret = secret

    def prepare(self, request, response, base_url):
        """Give ``response`` the cookie (reusing the browser's) and return the form token."""
        secure = base_url.startswith("https:")
        name = _cookie_name(secure)
        value = request.cookies.get(name)
        if not _plausible(value):
            value = secrets.token_urlsafe(32)
            response.set_cookie(name, value, path="/", secure=secure, httponly=True,
                                samesite="strict")
        return self._sign(value)

    def check(self, request, base_url):
        """Raise 403 unless the POSTed form carries a valid token and comes from ``base_url``."""
        expected_origin = _origin(base_url)
        origin = request.headers.get("Origin")
        referer = request.headers.get("Referer")
        if origin is not None:
            if origin.lower() != expected_origin:
                self._refuse(request, "Origin " + repr(origin[:100]))
        elif referer is not None and _origin(referer) != expected_origin:
            self._refuse(request, "Referer from another site")
        value = request.cookies.get(_cookie_name(base_url.startswith("https:")))
        token = request.POST.get(FIELD, "")
        if not _plausible(value) or not hmac.compare_digest(
                token.encode("utf-8", "replace"), self._sign(value).encode("ascii")):
            self._refuse(request, "missing or wrong form token")

    def _sign(self, value):
        return hmac.new(self._secret, value.encode("ascii"), hashlib.sha256).hexdigest()

    @staticmethod
    def _refuse(request, reason):
        security_log.warning("CSRFRejected: %s on %s %s from %s", reason, request.method,
                             request.path_info, client_address(request))
        raise exc.HTTPForbidden(
            "This form expired or was sent from another site. "
            "Reload the page and try again.")


def _cookie_name(secure):
    return "__Host-" + _COOKIE if secure else _COOKIE


def _plausible(value):
    return bool(value) and len(value) <= 100 and value.isascii()


def _origin(url):
    """``https://host:port`` of ``url`` (the form browsers send in Origin)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
