"""The two HTTP calls the tokenserver makes to the Mozilla accounts OAuth server.

``GET <oauth>/v1/jwks`` (the public keys that sign access tokens) and
``POST <oauth>/v1/verify`` (FxA's own verdict on a token we cannot check
locally). Anything that keeps an answer from arriving or makes it unusable
(refused connection, timeout, TLS failure, 5xx, a body that is not JSON)
raises :class:`AccountsServerUnavailable`, which the application turns into
a 503 with ``Retry-After``: an FxA outage must never look like bad
credentials to the client, or Firefox asks its user to sign in again
(reference §1.4, SS-8).

The standard library's ``urllib.request`` is enough for two JSON calls and
adds no dependency; TLS is always verified, against the system's CAs or
``ca_file`` (a private accounts server). No message built here ever holds
the token: it travels only in the body of the verify request.
"""

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from syncserver.errors import BackendUnavailable, ConfigError

#: Mozilla's production OAuth server (the reference's default; never stage).
DEFAULT_SERVER_URL = "https://oauth.accounts.firefox.com/v1"

#: A JWKS or verify answer is a few kilobytes; anything past this is not one.
MAX_ANSWER_BYTES = 1024 * 1024


class AccountsServerUnavailable(BackendUnavailable):
    """The accounts server did not answer, or answered something unusable (503)."""

    service = "accounts"


def normalize_server_url(url, key="tokenserver.oauth_server_url"):
    """``https://host[/prefix]/v1`` from the setting, with or without ``/v1`` or a final slash."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{key} must be the URL of the accounts OAuth server.")
    url = url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{key} must be an http(s) URL such as {DEFAULT_SERVER_URL}, "
                          f"not {url!r}.")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key} must not have a query or fragment: {url!r}.")
    if not url.endswith("/v1"):
        url += "/v1"
    return url


class AccountsClient:
    """JSON over HTTP(S) to one accounts OAuth server, with a timeout per call."""

    def __init__(self, server_url=DEFAULT_SERVER_URL, timeout=5.0, ca_file=None):
        self.base_url = normalize_server_url(server_url)
        self.jwks_url = self.base_url + "/jwks"
        self.verify_url = self.base_url + "/verify"
        self.timeout = timeout
        try:
            self._tls = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"tokenserver.oauth_ca_file cannot be used: {error}") from None

    def fetch_jwks(self):
        """The parsed JSON of ``/v1/jwks``; :class:`AccountsServerUnavailable` unless a 200."""
        status, answer = self._call(urllib.request.Request(
            self.jwks_url, headers={"Accept": "application/json"}))
        if status != 200:
            raise AccountsServerUnavailable(
                f"the accounts server answered {status} at {self.jwks_url}")
        return answer

    def post_verify(self, token):
        """``(status, parsed JSON or None)`` of ``POST /v1/verify`` with ``{"token": token}``.

        The status is returned rather than judged: the caller decides which
        refusals mean "bad token". A 5xx, or a 200 that is not JSON, is
        already :class:`AccountsServerUnavailable` here.
        """
        body = json.dumps({"token": token}).encode("utf-8")
        request = urllib.request.Request(
            self.verify_url, data=body, method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        status, answer = self._call(request, allow_error_status=True)
        if status >= 500:
            raise AccountsServerUnavailable(
                f"the accounts server answered {status} at {self.verify_url}")
        return status, answer

    def _call(self, request, allow_error_status=False):
        url = request.full_url
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self._tls) as reply:
                status, raw = reply.status, reply.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as error:
            status = error.code
            if status >= 500 or not allow_error_status:
                error.close()
                raise AccountsServerUnavailable(
                    f"the accounts server answered {status} at {url}") from None
            try:
                raw = error.read(MAX_ANSWER_BYTES + 1)
            except OSError:
                raw = b""
            finally:
                error.close()
            return status, _parse_json(raw)
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
            # HTTPException, ValueError: a garbled status line, headers or body.
            reason = getattr(error, "reason", error)
            raise AccountsServerUnavailable(
                f"the accounts server at {url} did not answer: {reason}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise AccountsServerUnavailable(f"the answer of {url} is too large")
        answer = _parse_json(raw)
        if answer is None:
            raise AccountsServerUnavailable(f"the answer of {url} is not JSON")
        return status, answer


def _parse_json(raw):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
