"""``GET /1.0/sync/1.5`` over HTTP: the success answer, its token, and every request-level refusal.

One app per database (SQLite, MariaDB, PostgreSQL) serves the module; each
test uses accounts of its own. Access tokens come from the fake accounts
server, whose keys the app fetches over HTTP.
"""

import base64
import time

import pytest

from syncserver.controllers.tokenserver import default_metrics_secret
from syncserver.protocol.tokens import InvalidToken, hash_device_id, hash_fxa_uid, parse_token
from tests.fxa_server import OMIT
from tests.tokenserver.token_client import (
    ABSENT,
    HOST,
    OLD_SECRET,
    SECRET,
    client_state,
    error_body,
    fxa_uid,
    key_id,
)


@pytest.fixture
def app(shared_token_app):
    return shared_token_app


def assert_tokenserver_headers(response):
    assert response.content_type == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    timestamp = response.headers["X-Timestamp"]
    assert timestamp.isdigit() and abs(int(timestamp) - time.time()) < 60


def test_a_token_as_firefox_asks_for_it(app, module_database_url):
    account = fxa_uid("api-success")
    state = client_state("api-success")
    before = time.time()
    response = app.token(account, generation=1_588_194_534_000,
                         keys_changed_at=1_588_194_534_000, state=state, status=200)
    assert_tokenserver_headers(response)
    body = response.json
    assert set(body) == {"id", "key", "uid", "api_endpoint", "duration", "hashed_fxa_uid",
                         "hashalg", "node_type"}
    uid = body["uid"]
    assert isinstance(uid, int) and uid > 0
    assert body["api_endpoint"] == f"http://{HOST}/1.5/{uid}"
    assert body["duration"] == 3600
    assert body["hashalg"] == "sha256"
    assert body["node_type"] == module_database_url.split(":")[0].split("+")[0]
    metrics_secret = default_metrics_secret(SECRET)
    assert body["hashed_fxa_uid"] == hash_fxa_uid(metrics_secret, account)

    token = parse_token(body["id"], [SECRET])
    assert token.derived_key == body["key"]
    assert token.uid == uid
    assert token.node == f"http://{HOST}"
    assert token.fxa_uid == account
    fingerprint = base64.urlsafe_b64encode(bytes.fromhex(state)).decode().rstrip("=")
    assert token.fxa_kid == f"1588194534000-{fingerprint}"
    assert token.hashed_fxa_uid == body["hashed_fxa_uid"]
    assert token.hashed_device_id == hash_device_id(metrics_secret, body["hashed_fxa_uid"])
    assert before + 3600 - 1 <= token.expires <= time.time() + 3600 + 1
    # Signed with the first master secret only.
    with pytest.raises(InvalidToken):
        parse_token(body["id"], [OLD_SECRET])


def test_the_derived_key_is_tokenlibs(app):
    """The key clients sign with is HKDF(secret, salt, info=.../derive/<id>), as tokenlib computes."""
    import tokenlib

    body = app.token(fxa_uid("api-key"), status=200).json
    assert tokenlib.get_derived_secret(body["id"], secret=SECRET) == body["key"]
    assert tokenlib.parse_token(body["id"], secret=SECRET)["uid"] == body["uid"]


def test_the_same_account_gets_the_same_uid(app):
    account = fxa_uid("api-same")
    first = app.token(account, status=200).json
    second = app.token(account, status=200).json
    assert first["uid"] == second["uid"]
    assert first["id"] != second["id"]  # a fresh salt and expiry each time


def test_older_guides_token_path_and_a_path_prefix(app):
    account = fxa_uid("api-paths")
    uid = app.token(account, status=200).json["uid"]
    assert app.token(account, path="/token/1.0/sync/1.5", status=200).json["uid"] == uid
    prefixed = app.token(account, path="/1.0/sync/1.5", environ={"SCRIPT_NAME": "/sync"},
                         status=200).json
    assert prefixed["api_endpoint"] == f"http://{HOST}/sync/1.5/{uid}"
    assert parse_token(prefixed["id"], [SECRET]).node == f"http://{HOST}/sync"


@pytest.mark.parametrize("asked,granted", [
    ("60", 60), ("1", 1), ("3600", 3600), ("0", 3600), ("3601", 3600), ("-5", 3600),
    ("abc", 3600), ("1e3", 3600), ("+60", 3600), ("", 3600), ("99999999999999999999", 3600),
    ("%FF", 3600),
])
def test_the_duration_parameter(app, asked, granted):
    response = app.token(fxa_uid("api-duration"), path=f"/1.0/sync/1.5?duration={asked}",
                         status=200)
    assert response.json["duration"] == granted
    expires = parse_token(response.json["id"], [SECRET]).expires
    assert abs(expires - (time.time() + granted)) < 5


@pytest.mark.parametrize("authorization,description", [
    (ABSENT, "Unauthorized"),
    ("Bearer", "Unauthorized"),
    ("Bearer\u00e9 token", "Unauthorized"),
    ("BrowserID some-assertion", "Unsupported"),
    ("Basic dXNlcjpwYXNz", "Unsupported"),
])
def test_authorization_header_refusals(app, authorization, description):
    response = app.token(fxa_uid("api-auth"), authorization=authorization, status=401)
    assert response.json == error_body("error", description=description)
    assert_tokenserver_headers(response)


def test_the_bearer_scheme_is_case_insensitive(app):
    token = app.fxa.mint({"sub": fxa_uid("api-case")})
    app.token(authorization=f"bearer {token}", status=200)
    app.token(authorization=f"BEARER   {token}", status=200)


@pytest.mark.parametrize("claims,header", [
    ({"exp": int(time.time()) - 3600}, None),
    ({"scope": "profile"}, None),
    ({"sub": OMIT}, None),
    ({}, {"typ": "JWT"}),
    ({}, {"alg": "HS256"}),
])
def test_an_invalid_access_token_is_invalid_credentials(app, claims, header):
    token = app.fxa.mint({"sub": fxa_uid("api-invalid"), **claims}, header=header)
    before = app.row_counts()
    # A bad token wins over a bad X-KeyID (syncstorage-rs's order).
    response = app.token(access_token=token, key_id_header="junk", status=401)
    assert response.json == error_body("invalid-credentials")
    assert app.row_counts() == before


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "e30.e30.e30", "not a token at all"])
def test_garbage_access_tokens_are_invalid_credentials(app, garbage):
    response = app.token(authorization=f"Bearer {garbage}", status=401)
    assert response.json == error_body("invalid-credentials")


def test_a_missing_key_id(app):
    response = app.token(fxa_uid("api-kid"), key_id_header=ABSENT, status=401)
    assert response.json == error_body("invalid-key-id", location="header",
                                       description="Missing X-KeyID header")


@pytest.mark.parametrize("header", [
    "1234",                       # no dash
    "abc-u7s",                    # not a number
    "-u7s",                       # no timestamp
    "1234-u7s=",                  # padded
    "1234-u7s+",                  # not the URL-safe alphabet
    "1234-u",                     # an impossible length
    "1234-u7t",                   # non-zero trailing bits
    "99999999999999999999-u7s",   # beyond 64 bits
    "1234-" + "A" * 44,           # a fingerprint longer than 16 bytes
    "12\u00e934-u7s",
])
def test_a_malformed_key_id_is_invalid_credentials(app, header):
    before = app.row_counts()
    response = app.token(fxa_uid("api-bad-kid"), key_id_header=header, status=401)
    assert response.json == error_body("invalid-credentials")
    assert app.row_counts() == before


def test_the_fingerprint_may_contain_dashes(app):
    """Split at the first dash: "-" is in the base64url alphabet."""
    state = "f8" * 16  # encodes with "-" in it
    assert "-" in key_id(0, state).partition("-")[2]
    response = app.token(fxa_uid("api-dash"), state=state, status=200)
    assert parse_token(response.json["id"], [SECRET]).fxa_kid.endswith(
        key_id(0, state).partition("-")[2])


def test_x_client_state_must_match_the_key_id(app):
    account, state = fxa_uid("api-xcs"), client_state("api-xcs")
    app.token(account, state=state, client_state_header=state, status=200)
    mismatch = app.token(account, state=state, client_state_header=client_state("other"),
                         status=401)
    assert mismatch.json == error_body("invalid-client-state")
    upper = app.token(account, state=state, client_state_header=state.upper(), status=401)
    assert upper.json == error_body("invalid-client-state")


@pytest.mark.parametrize("value", ["has space", "a" * 33, "semi;colon", "caf\u00e9"])
def test_a_malformed_x_client_state_is_400(app, value):
    response = app.token(fxa_uid("api-xcs-bad"), client_state_header=value, status=400)
    assert response.json == error_body("error", location="header", name="X-Client-State",
                                       description="Invalid client state value")


@pytest.mark.parametrize("path,body", [
    ("/1.0/foo/1.5", error_body("error", "url", "application", "Unsupported application")),
    ("/1.0/sync/1.0", error_body("error", "url", "1.0", "Unsupported application version")),
    ("/1.0/sync/2", error_body("error", "url", "2", "Unsupported application version")),
    ("/token/1.0/foo/1.5", error_body("error", "url", "application", "Unsupported application")),
    ("/1.0/sync", error_body("error", "url", "", "Not Found")),
    ("/1.0/sync/latest", error_body("error", "url", "", "Not Found")),
    ("/token/anything/else", error_body("error", "url", "", "Not Found")),
])
def test_unknown_applications_versions_and_paths(app, path, body):
    response = app.http.get(path, expect_errors=True)
    assert response.status_int == 404
    assert response.json == body
    assert_tokenserver_headers(response)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_other_methods_are_405(app, method):
    response = app.http.request("/1.0/sync/1.5", method=method, expect_errors=True)
    assert response.status_int == 405
    assert response.headers["Allow"] == "GET"
    assert_tokenserver_headers(response)
    if method != "HEAD":
        assert response.json == error_body("error", "url", "", "Method Not Allowed")


def test_sync11_paths_keep_their_own_answers(app):
    """/1.0/<user>/storage is Sync 1.1 (even for a user named "sync"): no tokenserver body."""
    response = app.http.get("/1.0/alice/storage", expect_errors=True)
    assert response.status_int == 405 and response.headers["Allow"] == "DELETE"
    assert "X-Timestamp" not in response.headers
    response = app.http.delete("/1.0/sync/storage", expect_errors=True)
    assert response.status_int == 401 and "X-Timestamp" not in response.headers
