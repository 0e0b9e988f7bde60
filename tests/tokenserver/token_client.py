"""A tokenserver app built from settings, and a client that asks it for tokens as Firefox does.

The app is the real one (``syncserver.app.build_app``) on a real database,
verifying access tokens minted by the fake accounts server
(tests/fxa_server.py) against the keys it fetches from it over HTTP.
"""

import base64
import hashlib

import sqlalchemy
import webtest

from syncserver.app import build_app
from tests.fxa_server import OMIT

#: The master secret the test apps sign tokens with (the first of two: rotation works).
SECRET = "tokenserver-tests-master-secret-0123456789abcdef"
OLD_SECRET = "an-older-master-secret-still-accepted-by-nodes-000"
#: The host tests reach the app at; with no node list, tokens name this server there.
HOST = "sync.example.org"
#: Leave a header or claim out (``token(key_id=ABSENT)``).
ABSENT = OMIT


def client_state(seed):
    """A client state as Firefox derives it (32 hex digits), different for each seed."""
    return hashlib.sha256(str(seed).encode()).hexdigest()[:32]


def key_id(keys_changed_at, state):
    """``X-KeyID: <keys_changed_at>-<base64url_nopad(fingerprint)>``."""
    fingerprint = base64.urlsafe_b64encode(bytes.fromhex(state)).decode("ascii").rstrip("=")
    return f"{keys_changed_at}-{fingerprint}"


def fxa_uid(seed):
    """A Mozilla-account id (32 hex digits) for a test account."""
    return hashlib.md5(f"account-{seed}".encode()).hexdigest()


class TokenApp:
    """The server under test (``wsgi``), a WebTest client on it (``http``) and the fake FxA."""

    def __init__(self, wsgi, fxa):
        self.wsgi = wsgi
        self.fxa = fxa
        self.http = webtest.TestApp(wsgi, extra_environ={"HTTP_HOST": HOST})

    @classmethod
    def build(cls, url, fxa, **overrides):
        """An app on ``url`` with the tokenserver on, asking ``fxa``; ``overrides`` are keys."""
        settings = {
            "storage.sqluri": url,
            "storage.create_tables": "true",
            "tokenserver.enabled": "true",
            "tokenserver.oauth_server_url": fxa.url,
            "tokenserver.oauth_timeout": "2",
            "global.master_secret": f"{SECRET} {OLD_SECRET}",
            "global.retry_after": "120",
        }
        settings.update({key.replace("__", "."): value for key, value in overrides.items()})
        return cls(build_app(settings), fxa)

    @property
    def users(self):
        return self.wsgi.components.token_users

    def token(self, account=None, *, generation=1_000, keys_changed_at=1_000, state=None,
              key_id_header=None, client_state_header=None, access_token=None,
              authorization=None, path="/1.0/sync/1.5", status=None, environ=None,
              **extra_headers):
        """``GET path`` as Firefox sends it; returns the WebTest response.

        ``generation`` None leaves ``fxa-generation`` out of the access token;
        ``keys_changed_at`` and ``state`` make the X-KeyID unless
        ``key_id_header`` gives it (:data:`ABSENT` leaves it out).
        ``status`` is asserted when given; ``environ`` adds WSGI keys (SCRIPT_NAME).
        """
        headers = dict(extra_headers)
        if authorization is None:
            if access_token is None:
                claims = {"sub": account or fxa_uid("default"),
                          "fxa-generation": OMIT if generation is None else generation}
                access_token = self.fxa.mint(claims)
            authorization = f"Bearer {access_token}"
        if authorization is not ABSENT:
            headers["Authorization"] = authorization
        if key_id_header is None:
            key_id_header = key_id(keys_changed_at or 0,
                                   client_state(0) if state is None else state)
        if key_id_header is not ABSENT:
            headers["X-KeyID"] = key_id_header
        if client_state_header is not None:
            headers["X-Client-State"] = client_state_header
        response = self.http.get(path, headers=headers, expect_errors=True,
                                 extra_environ=environ)
        if status is not None:
            assert response.status_int == status, response.body
        return response

    def row_counts(self):
        """``(token_users rows, token_accounts rows, sum of the nodes' loads)``."""
        with self.users.engine.connect() as connection:
            users = connection.exec_driver_sql("SELECT COUNT(*) FROM token_users").scalar()
            accounts = connection.exec_driver_sql("SELECT COUNT(*) FROM token_accounts").scalar()
            load = connection.exec_driver_sql(
                "SELECT COALESCE(SUM(current_load), 0) FROM nodes").scalar()
        return users, accounts, int(load)

    def rows_of(self, account):
        """The account's rows as dicts, oldest first."""
        with self.users.engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text(
                "SELECT uid, generation, client_state, keys_changed_at, created_at, replaced_at,"
                " node_id FROM token_users WHERE fxa_uid = :fxa_uid ORDER BY uid"),
                {"fxa_uid": account}).mappings().all()
        return [dict(row) for row in rows]

    def execute(self, sql, **parameters):
        """Run a statement on the tokenserver's database (to arrange a situation)."""
        with self.users.engine.begin() as connection:
            return connection.execute(sqlalchemy.text(sql), parameters)

    def close(self):
        self.wsgi.close()


def error_body(status, location="body", name="", description="Unauthorized"):
    """The Cornice-style body of reference §1.10."""
    return {"status": status,
            "errors": [{"location": location, "name": name, "description": description}]}
