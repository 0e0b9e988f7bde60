"""The tokenserver benchmark's floor: ``GET /1.0/sync/1.5``, as little as a Python server can do.

This is not a tokenserver. It answers exactly the requests that
``bench/token_run.py`` measures, with the same verification and the same SQL
as syncserver's tokenserver, and nothing else in the way: no framework, no
ORM, plain :mod:`sqlite3` in WAL mode. The standard library does everything
but the RSA signature check, which uses ``cryptography`` (what PyJWT, and so
syncserver, verifies RS256 with):

- ``Authorization: Bearer <JWT>``: header and claims decoded by hand,
  ``alg`` RS256 and ``typ`` at+jwt required, the signature verified
  (PKCS#1 v1.5, SHA-256) with the JWKS key its ``kid`` names; the JWKS is
  fetched from ``FLOORTOK_JWKS_URL`` on first use and kept; ``exp`` (5 s
  leeway), the oldsync scope, ``sub`` and ``fxa-generation`` checked;
- ``X-KeyID: <keys_changed_at>-<base64url fingerprint>`` parsed;
- the statements syncserver's SQL store runs (``syncserver/tokenserver/users_sql.py``):
  for a known account with the same keys, two reads and the node-list probe;
  for a new account, the same reads, then one write transaction (lock row,
  re-read, node choice, insert);
- a tokenlib token (HMAC-SHA256 over the JSON payload, HKDF-derived key)
  signed with ``FLOORTOK_SECRET``, the metrics hashes, the same JSON answer.

Other cases (key changes, blocked accounts, node lists) are not handled:
the benchmark sends none. The tables must exist (``token_run.py`` creates
them with syncserver's own DDL).
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sqlite3
import threading
import time
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

OLDSYNC_SCOPE = "https://identity.mozilla.com/apps/oldsync"
LEEWAY_SECONDS = 5
DURATION = 3600
MAX_ROWS = 20
INFO_SIGNING = b"services.mozilla.com/tokenlib/v1/signing"
INFO_DERIVE = b"services.mozilla.com/tokenlib/v1/derive/"
METRICS_LABEL = b"syncserver/tokenserver/metrics_secret/v1"
_SUB = re.compile(r"[A-Za-z0-9=_-]{1,64}\Z")
JSON_TYPE = ("Content-Type", "application/json")

BLOCKED = "SELECT blocked FROM token_accounts WHERE email = ?"
ROWS = ("SELECT token_users.uid, token_users.generation, token_users.client_state, "
        "token_users.keys_changed_at, token_users.created_at, token_users.replaced_at, "
        "token_users.node_id, nodes.id AS found_node_id, nodes.url AS node_url, "
        "nodes.downed AS node_downed FROM token_users LEFT OUTER JOIN nodes "
        "ON token_users.node_id = nodes.id WHERE token_users.email = ? "
        "ORDER BY token_users.created_at DESC, token_users.uid DESC LIMIT ? OFFSET ?")
NODES_EXIST = "SELECT nodes.id FROM nodes LIMIT ? OFFSET ?"
FREE_NODES = ("SELECT id, url, capacity, current_load, available, downed, backoff FROM nodes "
              "WHERE available IS 1 AND downed IS 0 AND backoff = ? "
              "AND current_load < capacity ORDER BY id")
LOCK_ACCOUNT = ("INSERT INTO token_accounts (email, blocked, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING")
INSERT_USER = ("INSERT INTO token_users (email, fxa_uid, generation, client_state, "
               "keys_changed_at, created_at, replaced_at, node_id) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


class Refused(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status = status
        self.body = body


def invalid_credentials():
    return Refused("401 Unauthorized", '{"status": "invalid-credentials", "errors": '
                   '[{"location": "body", "name": "", "description": "Unauthorized"}]}')


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hkdf_sha256(secret, salt, info):
    prk = hmac.new(salt or b"\x00" * 32, secret, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def connect(path):
    connection = sqlite3.connect(path, timeout=15, isolation_level=None,
                                 check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=15000")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class FloorTokenApp:
    def __init__(self, path, secret, jwks_url):
        self.path = path
        self.secret = secret.encode("utf-8")
        self.signing_key = hkdf_sha256(self.secret, None, INFO_SIGNING)
        self.metrics_secret = hmac.new(self.secret, METRICS_LABEL,
                                       hashlib.sha256).hexdigest().encode("utf-8")
        self.jwks_url = jwks_url
        self.keys = None  # kid -> RSA public key, fetched on first use
        self.local = threading.local()
        self.lock = threading.Lock()

    def db(self):
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = connect(self.path)
        return connection

    def __call__(self, environ, start_response):
        try:
            status, body = self.token(environ)
        except Refused as refusal:
            status, body = refusal.status, refusal.body
        data = body.encode("utf-8")
        start_response(status, [JSON_TYPE, ("Content-Length", str(len(data))),
                                ("X-Timestamp", str(int(time.time()))),
                                ("Cache-Control", "no-store")])
        return [data]

    def public_keys(self):
        if self.keys is None:
            with urllib.request.urlopen(self.jwks_url, timeout=5) as answer:
                document = json.load(answer)
            keys = {}
            for jwk in document["keys"]:
                if jwk.get("kty") == "RSA":
                    numbers = rsa.RSAPublicNumbers(
                        int.from_bytes(b64url_decode(jwk["e"]), "big"),
                        int.from_bytes(b64url_decode(jwk["n"]), "big"))
                    keys[jwk.get("kid")] = numbers.public_key()
            self.keys = keys
        return self.keys

    def verify(self, header):
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            raise invalid_credentials()
        try:
            head, body, signature = token.strip().split(".")
            jose = json.loads(b64url_decode(head))
            claims = json.loads(b64url_decode(body))
            signature = b64url_decode(signature)
        except (ValueError, binascii.Error):
            raise invalid_credentials() from None
        if jose.get("alg") != "RS256" or str(jose.get("typ", "")).lower() not in (
                "at+jwt", "application/at+jwt"):
            raise invalid_credentials()
        key = self.public_keys().get(jose.get("kid"))
        if key is None:
            raise invalid_credentials()
        try:
            key.verify(signature, f"{head}.{body}".encode("ascii"), padding.PKCS1v15(),
                       hashes.SHA256())
        except InvalidSignature:
            raise invalid_credentials() from None
        sub = claims.get("sub")
        scopes = re.split(r"[\s,]+", claims.get("scope", ""))
        if (not isinstance(claims.get("exp"), int)
                or claims["exp"] + LEEWAY_SECONDS <= time.time()
                or OLDSYNC_SCOPE not in scopes or not isinstance(sub, str)
                or not _SUB.match(sub)):
            raise invalid_credentials()
        return sub, claims.get("fxa-generation") or None

    def token(self, environ):
        if environ.get("PATH_INFO") != "/1.0/sync/1.5" or environ["REQUEST_METHOD"] != "GET":
            raise Refused("404 Not Found", '{"status": "error"}')
        fxa_uid, generation = self.verify(environ.get("HTTP_AUTHORIZATION"))
        key_id = environ.get("HTTP_X_KEYID", "")
        kca_text, dash, fingerprint = key_id.partition("-")
        try:
            keys_changed_at = int(kca_text) or None
            client_state = b64url_decode(fingerprint).hex()
        except (ValueError, binascii.Error):
            raise invalid_credentials() from None
        if not dash or len(client_state) > 32:
            raise invalid_credentials()
        user = self.user(fxa_uid, generation, keys_changed_at, client_state)
        node = "http://" + environ["HTTP_HOST"]
        hashed_fxa_uid = hmac.new(self.metrics_secret, fxa_uid.encode("utf-8"),
                                  hashlib.sha256).hexdigest()[:32]
        payload = {
            "uid": user, "node": node, "expires": int(time.time()) + DURATION,
            "fxa_uid": fxa_uid,
            "fxa_kid": "%013d-%s" % (keys_changed_at or generation or 0,
                                     base64.urlsafe_b64encode(bytes.fromhex(client_state))
                                     .decode("ascii").rstrip("=")),
            "hashed_fxa_uid": hashed_fxa_uid,
            "hashed_device_id": hmac.new(self.metrics_secret,
                                         (hashed_fxa_uid + "none").encode("utf-8"),
                                         hashlib.sha256).hexdigest()[:32],
            "salt": os.urandom(3).hex(),
        }
        raw = json.dumps(payload).encode("utf-8")
        token_id = base64.urlsafe_b64encode(
            raw + hmac.new(self.signing_key, raw, hashlib.sha256).digest()).decode("ascii")
        key = base64.urlsafe_b64encode(hkdf_sha256(
            self.secret, payload["salt"].encode("ascii"),
            INFO_DERIVE + token_id.encode("ascii"))).decode("ascii")
        return "200 OK", json.dumps({
            "id": token_id, "key": key, "uid": user, "api_endpoint": f"{node}/1.5/{user}",
            "duration": DURATION, "hashed_fxa_uid": hashed_fxa_uid, "hashalg": "sha256",
            "node_type": "sqlite"})

    def user(self, fxa_uid, generation, keys_changed_at, client_state):
        """The account's uid: read without a lock; a new account in one write transaction."""
        email = f"{fxa_uid}@api.accounts.firefox.com"
        db = self.db()
        if db.execute(BLOCKED, (email,)).fetchone() not in (None, (0,)):
            raise Refused("403 Forbidden", '{"status": "blocked"}')
        rows = db.execute(ROWS, (email, MAX_ROWS, 0)).fetchall()
        if rows:
            db.execute(NODES_EXIST, (1, 0)).fetchone()
            uid, stored_generation, stored_state, stored_kca = rows[0][:4]
            if ((stored_generation, stored_kca, stored_state)
                    != (generation, keys_changed_at, client_state)):
                raise Refused("400 Bad Request", '{"status": "not-in-the-floor"}')
            return uid
        now_ms = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(LOCK_ACCOUNT, (email, 0, now_ms))
            db.execute(BLOCKED, (email,)).fetchone()
            if db.execute(ROWS, (email, MAX_ROWS, 0)).fetchall():
                raise Refused("400 Bad Request", '{"status": "not-in-the-floor"}')
            db.execute(FREE_NODES, (0,)).fetchall()
            db.execute(NODES_EXIST, (1, 0)).fetchone()
            uid = db.execute(INSERT_USER, (email, fxa_uid, generation or 0, client_state,
                                           keys_changed_at, now_ms, None, None)).lastrowid
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return uid


def make_app():
    return FloorTokenApp(os.environ["FLOORTOK_DB"], os.environ["FLOORTOK_SECRET"],
                         os.environ["FLOORTOK_JWKS_URL"])


application = make_app() if "FLOORTOK_DB" in os.environ else None
