"""A fake Mozilla accounts OAuth server: the real protocol over real HTTP(S), on loopback.

It serves the two endpoints the tokenserver calls, as FxA does
(``fxa-auth-server/lib/oauth``):

- ``GET /v1/jwks``: ``{"keys": [{"kty": "RSA", "alg": "RS256", "kid", "use": "sig",
  "fxa-createdAt", "n", "e": "AQAB"}, ...]}`` for its published RSA keys;
- ``POST /v1/verify`` with ``{"token": ...}``: ``{"user", "client_id", "scope": [...],
  "generation"}`` for a token it issued and that is still valid, else 400 with
  FxA's errno (108 invalid token, 109 invalid parameter, 115 expired token).

:meth:`FakeAccountsServer.mint` makes access tokens as FxA does (header
``{"alg": "RS256", "typ": "at+JWT", "kid"}``, claims ``sub``, ``scope``,
``fxa-generation``, ``client_id``, ``exp``, ``iat``, ``iss``, ``aud``, ``jti``),
and every part can be overridden or removed to make the bad ones: expired,
another ``typ``, ``alg: none``, HS256 keyed with the public key, a key
id nobody publishes, a retired key... The JWS is assembled here by hand
(base64url JSON, signed with ``cryptography``), not by PyJWT, so the
verifier under test is not checked against its own library.

Faults for the tests: ``delay`` (seconds before answering), ``status``
(answer every request with it, e.g. 500), ``jwks_body`` (raw bytes or a
document served as the JWKS), ``verify_answer`` (``(status, body)`` every
verify request gets), :meth:`stop` / :meth:`start` (stop and resume listening on the
same port). ``jwks_fetches`` and ``verify_requests`` count the requests.
"""

import base64
import dataclasses
import hashlib
import hmac
import http
import http.server
import json
import re
import secrets
import ssl
import threading
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.services import free_port

OLDSYNC_SCOPE = "https://identity.mozilla.com/apps/oldsync"
#: What FxA puts in ``aud`` for oldsync tokens: Mozilla's own tokenserver.
MOZILLA_TOKENSERVER = "https://token.services.mozilla.com"
ISSUER = "https://accounts.firefox.com"
#: Firefox desktop's OAuth client id.
FIREFOX_CLIENT_ID = "5882386c6d801776"

#: ``mint(drop=...)`` / ``mint(header=...)`` value meaning "leave this out".
OMIT = object()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value):
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


@dataclasses.dataclass
class SigningKey:
    """An RSA key pair the fake signs with; published while in ``FakeAccountsServer.keys``."""

    kid: str
    private_key: rsa.RSAPrivateKey
    created_at: int

    @classmethod
    def generate(cls, bits=2048, kid=None):
        created_at = int(time.time() * 1000)
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        # FxA's kids look like "20190730-15e67f24" (a date and a fingerprint).
        kid = kid or time.strftime("%Y%m%d") + "-" + secrets.token_hex(4)
        return cls(kid, private_key, created_at)

    def jwk(self):
        numbers = self.private_key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "alg": "RS256", "kid": self.kid, "use": "sig",
                "fxa-createdAt": self.created_at, "n": b64url(n), "e": b64url(e)}

    def public_pem(self):
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, message):
        return self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, message, signature):
        try:
            self.private_key.public_key().verify(signature, message, padding.PKCS1v15(),
                                                 hashes.SHA256())
            return True
        except Exception:
            return False


class FakeAccountsServer:
    """A fake FxA OAuth server on a free 127.0.0.1 port; see the module docstring.

    ``tls_files`` = (certificate, key) serves HTTPS instead of HTTP.
    """

    def __init__(self, tls_files=None):
        self.tls_files = tls_files
        self.port = free_port()
        self.keys = [SigningKey.generate()]
        self.retired_keys = []
        self.opaque_tokens = {}
        self.jwks_fetches = 0
        self.verify_requests = 0
        self.delay = 0.0
        self.status = None
        self.jwks_body = None
        self.verify_answer = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # --- URLs and life cycle --------------------------------------------------

    @property
    def scheme(self):
        return "https" if self.tls_files else "http"

    @property
    def url(self):
        """The OAuth server URL, as ``tokenserver.oauth_server_url`` takes it."""
        return f"{self.scheme}://127.0.0.1:{self.port}/v1"

    def start(self):
        self._stopping.clear()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port),
                                                       self._handler_class())
        if self.tls_files:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, self.tls_files))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening (connections are refused until :meth:`start`)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    # --- Keys -----------------------------------------------------------------

    @property
    def active_key(self):
        """The key new tokens are signed with: the newest published one."""
        return self.keys[-1]

    def add_key(self, key=None):
        """Publish a new key (it signs the tokens minted from now on); returns it."""
        key = key or SigningKey.generate()
        with self._lock:
            self.keys.append(key)
        return key

    def retire_key(self, key):
        """Stop publishing ``key`` (tokens it signed no longer verify here)."""
        with self._lock:
            self.keys.remove(key)
            self.retired_keys.append(key)

    def jwks(self):
        """The JWKS document served at ``/v1/jwks``."""
        with self._lock:
            return {"keys": [key.jwk() for key in self.keys]}

    # --- Tokens ---------------------------------------------------------------

    def default_claims(self, lifetime=3600):
        now = int(time.time())
        return {
            "sub": uuid.uuid4().hex,
            "scope": f"profile {OLDSYNC_SCOPE}",
            "fxa-generation": int(time.time() * 1000) - 86_400_000,
            "client_id": FIREFOX_CLIENT_ID,
            "exp": now + lifetime,
            "iat": now,
            "iss": ISSUER,
            "aud": MOZILLA_TOKENSERVER,
            "jti": secrets.token_hex(32),
        }

    def mint(self, claims=None, *, header=None, key=None, alg="RS256", hmac_secret=None,
             signature=None):
        """An access token as FxA issues it; ``claims`` and ``header`` entries override.

        An override whose value is :data:`OMIT` removes the entry. ``key`` signs
        (default: the active key; any :class:`SigningKey`, published or not);
        its kid goes into the header unless ``header`` says otherwise.
        ``alg`` chooses the signature actually made: ``"RS256"``, ``"none"``
        (empty signature) or ``"HS256"`` keyed with ``hmac_secret`` (default:
        the signing key's public PEM, the classic key-confusion attack).
        ``signature`` replaces the signature bytes outright.
        """
        key = key or self.active_key
        full_header = {"alg": alg, "typ": "at+JWT", "kid": key.kid}
        full_claims = self.default_claims()
        for target, overrides in ((full_header, header), (full_claims, claims)):
            for name, value in (overrides or {}).items():
                if value is OMIT:
                    target.pop(name, None)
                else:
                    target[name] = value
        return self.sign(full_header, full_claims, key=key, alg=alg, hmac_secret=hmac_secret,
                         signature=signature)

    @staticmethod
    def sign(header, claims, *, key, alg="RS256", hmac_secret=None, signature=None):
        """A compact JWS of exactly ``header`` and ``claims`` (any JSON values)."""
        signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode("ascii")
        if signature is None:
            if alg == "none":
                signature = b""
            elif alg == "HS256":
                secret = hmac_secret if hmac_secret is not None else key.public_pem()
                signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
            else:
                signature = key.sign(signing_input)
        return signing_input.decode("ascii") + "." + b64url(signature)

    def mint_opaque(self, *, user=None, scope=(OLDSYNC_SCOPE,), generation=None,
                    client_id=FIREFOX_CLIENT_ID, lifetime=3600):
        """An opaque access token (64 hex digits) that only ``/v1/verify`` knows."""
        token = secrets.token_hex(32)
        answer = {"user": user or uuid.uuid4().hex, "client_id": client_id,
                  "scope": list(scope)}
        if generation is not None:
            answer["generation"] = generation
        with self._lock:
            self.opaque_tokens[token] = (answer, time.time() + lifetime)
        return token

    # --- What /v1/verify decides ----------------------------------------------

    def _verify(self, token):
        """``(status, body)`` of ``/v1/verify`` for ``token``, as FxA answers."""
        # FxA's request validation: 64 lower-case hex digits, or three base64url segments.
        if not isinstance(token, str) or not (
                re.fullmatch(r"[0-9a-f]{64}", token)
                or re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)):
            return 400, _error(400, 109, "Invalid request parameter")
        with self._lock:
            opaque = self.opaque_tokens.get(token)
            keys = list(self.keys)
        if opaque is not None:
            answer, expires = opaque
            if expires < time.time():
                return 400, _error(400, 115, "Expired token")
            return 200, answer
        parts = token.split(".")
        if len(parts) != 3:
            return 400, _error(400, 108, "Invalid token")
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except ValueError:
            return 400, _error(400, 108, "Invalid token")
        if not isinstance(header, dict) or not isinstance(claims, dict) \
                or header.get("alg") != "RS256":
            return 400, _error(400, 108, "Invalid token")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        if not any(key.verify(signing_input, signature) for key in keys):
            return 400, _error(400, 108, "Invalid token")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp < time.time():
            return 400, _error(400, 115, "Expired token")
        scope = claims.get("scope")
        answer = {"user": claims.get("sub"), "client_id": claims.get("client_id"),
                  "scope": scope.split() if isinstance(scope, str) else []}
        if claims.get("fxa-generation") is not None:
            answer["generation"] = claims["fxa-generation"]
        return 200, answer

    # --- HTTP -----------------------------------------------------------------

    def _handler_class(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path != "/v1/jwks":
                    return self._answer(404, _error(404, 999, "Not Found"))
                with fake._lock:
                    fake.jwks_fetches += 1
                if not self._fault():
                    body = fake.jwks_body
                    self._answer(200, fake.jwks() if body is None else body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path != "/v1/verify":
                    return self._answer(404, _error(404, 999, "Not Found"))
                with fake._lock:
                    fake.verify_requests += 1
                if self._fault():
                    return
                if fake.verify_answer is not None:
                    return self._answer(*fake.verify_answer)
                try:
                    payload = json.loads(raw)
                except ValueError:
                    return self._answer(400, _error(400, 109, "Invalid request parameter"))
                token = payload.get("token") if isinstance(payload, dict) else None
                self._answer(*fake._verify(token))

            def _fault(self):
                """Apply ``delay`` and ``status``; True when the answer was sent."""
                if fake.delay and fake._stopping.wait(fake.delay):
                    return True
                if fake.status is not None:
                    self._answer(fake.status, _error(fake.status, 999, "Internal Server Error"))
                    return True
                return False

            def _answer(self, status, body):
                raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        return Handler


def _b64decode(segment):
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, TypeError) as error:
        raise ValueError(str(error)) from None


def _error(code, errno, message):
    """FxA's error body: the status, its reason phrase, a stable errno, a message."""
    return {"code": code, "errno": errno, "error": http.HTTPStatus(code).phrase,
            "message": message}
