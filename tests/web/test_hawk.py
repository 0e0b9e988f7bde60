"""Hawk verification of Sync 1.5 storage requests (reference §2), on WebOb requests."""

import logging
import re

import hawkauthlib
import pytest
import webob
from hypothesis import given, settings
from hypothesis import strategies as st

from syncserver.protocol.tokens import make_token
from syncserver.testing.sync15_client import Credentials, hawk_header, mint_token
from syncserver.web.hawk import (
    DEFAULT_SKEW_SECONDS,
    INFO_COLLECTIONS_GRACE_SECONDS,
    HawkAuthError,
    HawkVerifier,
    expired_token_grace,
    hawk_mac,
    payload_hash,
    require_uid,
    timestamp_mac,
)
from syncserver.web.nonces import MemoryNonceCache, NonceCacheUnavailable, RedisNonceCache
from syncserver.web.request_context import CLIENT_ADDRESS_KEY

SECRET = "s3cr3t"
NODE = "https://sync.example.com"
NOW = 1_700_000_000
INFO = "/1.5/42/info/collections"
ITEM = "/1.5/42/storage/bookmarks/%7B2a5f9e4c-0000-4000-8000-0123456789ab%7D"


@pytest.fixture
def verifier():
    return HawkVerifier([SECRET], NODE, MemoryNonceCache())


@pytest.fixture
def creds():
    return mint_token(42, NODE, SECRET, now=NOW)


def make_request(method, path, creds, node=NODE, raw="REQUEST_URI", script_name="",
                 body=None, content_type=None, hash_payload=False, ts_offset=0, nonce=None,
                 signed_url=None, header=None):
    """A WebOb request as a WSGI server would hand it over, signed like desktop Firefox.

    ``path`` is below the mount (SCRIPT_NAME); the client signed ``signed_url``
    (default: ``node + path``, i.e. a proxy stripped any prefix of the node).
    """
    request = webob.Request.blank(path, method=method)
    request.environ["SCRIPT_NAME"] = script_name
    if raw:
        request.environ[raw] = script_name + path
    if content_type is not None:
        request.content_type = content_type
    if body is not None:
        request.body = body
    if header is None:
        header = hawk_header(method, signed_url or node.rstrip("/") + path, creds,
                             body=body if hash_payload else None, content_type=content_type,
                             ts_offset=ts_offset, nonce=nonce, now=NOW)
    if header is not False:
        request.environ["HTTP_AUTHORIZATION"] = header
    return request


def refused(verifier, request, reason, **kwargs):
    with pytest.raises(HawkAuthError) as caught:
        verifier.verify(request, now=NOW, **kwargs)
    assert reason in caught.value.reason
    return caught.value


def flipped(mac):
    """The MAC with its first character changed (a MAC may itself start with "A")."""
    return ("A" if mac[0] != "A" else "B") + mac[1:]


def header_attributes(header):
    return dict(re.findall(r'(?:^Hawk |, )(\w+)="([^"]*)"', header))


# -- the reference vector and an independent implementation --------------------------------

def test_reference_mac_vector():
    assert hawk_mac("zgzca-tZeOQ1S6QhMigJYRZ_X9TfSyVWVK3QO_pl3ws=", "1700000000", "abc123", "GET",
                    INFO, "sync.example.com", 443) == "hmwH/0D2RctykU2AGkG0pDoY8tB13AxH/oamG/s22L4="


def test_reference_vector_request_verifies(verifier):
    token_id, key = make_token({"uid": 42, "node": NODE, "expires": 1700003600, "salt": "a1b2c3"},
                               SECRET)
    header = (f'Hawk id="{token_id}", ts="1700000000", nonce="abc123", '
              'mac="hmwH/0D2RctykU2AGkG0pDoY8tB13AxH/oamG/s22L4="')
    request = make_request("GET", INFO, None, header=header)
    token = verifier.verify(request, now=1_700_000_000)
    assert token.uid == 42 and token.derived_key == key


def test_mac_agrees_with_hawkauthlib(creds):
    """hawkauthlib signs WebOb's path_qs and Host: identical for a plain path at the root."""
    request = webob.Request.blank("https://sync.example.com/1.5/42/storage/tabs?full=1&newer=1.5")
    params = {"id": creds.id, "ts": "1700000123", "nonce": "bm9uY2U=", "ext": "x"}
    expected = hawkauthlib.get_signature(request, creds.key, params=params)
    assert hawk_mac(creds.key, "1700000123", "bm9uY2U=", "GET", "/1.5/42/storage/tabs?full=1&newer=1.5",
                    "sync.example.com", 443, ext="x") == expected


def test_desktop_header_layout(creds):
    header = hawk_header("POST", NODE + "/1.5/42/storage/tabs", creds, body=b"[]",
                         content_type="application/json", ext="e", nonce="bm9uY2U=", now=NOW)
    names = re.findall(r'(?:^Hawk |, )(\w+)="', header)
    assert header.startswith("Hawk id=\"") and names == ["id", "ts", "nonce", "hash", "ext", "mac"]
    plain = hawk_header("GET", NODE + INFO, creds, now=NOW)
    assert re.findall(r'(?:^Hawk |, )(\w+)="', plain) == ["id", "ts", "nonce", "mac"]
    nonce = header_attributes(plain)["nonce"]
    assert len(nonce) == 12 and nonce.endswith("=")  # base64 of 8 random bytes, as desktop


# -- good and tampered requests -----------------------------------------------------------

def test_good_request(verifier, creds):
    token = verifier.verify(make_request("GET", INFO, creds), now=NOW)
    assert token.uid == 42 and token.node == NODE and token.expires == NOW + 3600


def test_percent_encoded_id_with_query(verifier, creds):
    path = ITEM + "?ids=%7Ba%7D%2C%7Bb%7D&batch=MTIz%3D"
    assert verifier.verify(make_request("GET", path, creds), now=NOW).uid == 42


def test_bad_mac(verifier, creds):
    header = hawk_header("GET", NODE + INFO, creds, now=NOW)
    mac = header_attributes(header)["mac"]
    request = make_request("GET", INFO, creds, header=header.replace(mac, flipped(mac)))
    refused(verifier, request, "bad MAC")


@pytest.mark.parametrize("signed_url", [
    NODE + "/1.5/42/info/collection_counts",           # path
    NODE + INFO + "?full=1",                            # query
    "https://evil.example.com" + INFO,                  # host
    "https://sync.example.com:8443" + INFO,             # port
    "http://sync.example.com" + INFO,                   # scheme, so port 80
])
def test_tampered_target_host_or_port(verifier, creds, signed_url):
    refused(verifier, make_request("GET", INFO, creds, signed_url=signed_url), "bad MAC")


def test_tampered_method(verifier, creds):
    request = make_request("DELETE", "/1.5/42", creds)
    request.method = "GET"
    refused(verifier, request, "bad MAC")


def test_host_header_is_not_trusted(verifier, creds):
    request = make_request("GET", INFO, creds)
    request.environ["HTTP_HOST"] = "evil.example.com:8080"
    request.environ["HTTP_X_FORWARDED_HOST"] = "evil.example.com"
    assert verifier.verify(request, now=NOW).uid == 42


# -- timestamps and nonces -----------------------------------------------------------------

@pytest.mark.parametrize("offset", [DEFAULT_SKEW_SECONDS + 1, -DEFAULT_SKEW_SECONDS - 1, 10**6])
def test_stale_timestamp_tells_the_server_time(verifier, creds, offset):
    error = refused(verifier, make_request("GET", INFO, creds, ts_offset=offset), "stale")
    attributes = header_attributes(error.www_authenticate)
    assert error.www_authenticate.startswith("Hawk ")
    assert attributes == {"ts": str(NOW), "tsm": timestamp_mac(creds.key, NOW),
                          "error": "Stale timestamp"}


@pytest.mark.parametrize("offset", [DEFAULT_SKEW_SECONDS, -DEFAULT_SKEW_SECONDS])
def test_edges_of_the_skew_window_are_accepted(verifier, creds, offset):
    assert verifier.verify(make_request("GET", INFO, creds, ts_offset=offset), now=NOW).uid == 42


def test_configurable_skew():
    verifier = HawkVerifier([SECRET], NODE, MemoryNonceCache(window=60), skew_seconds=60)
    creds = mint_token(42, NODE, SECRET, now=NOW)
    refused(verifier, make_request("GET", INFO, creds, ts_offset=61), "stale")
    assert verifier.verify(make_request("GET", INFO, creds, ts_offset=60), now=NOW)


def test_replay_refused(verifier, creds):
    request = make_request("GET", INFO, creds, nonce="fixed")
    assert verifier.verify(request, now=NOW).uid == 42
    refused(verifier, request, "nonce")
    refused(verifier, make_request("GET", INFO, creds, nonce="fixed"), "nonce")


def test_same_nonce_other_ts_accepted(verifier, creds):
    assert verifier.verify(make_request("GET", INFO, creds, nonce="n"), now=NOW)
    assert verifier.verify(make_request("GET", INFO, creds, nonce="n", ts_offset=1), now=NOW)


def test_same_nonce_other_token_accepted(verifier, creds):
    other = mint_token(42, NODE, SECRET, now=NOW)
    assert verifier.verify(make_request("GET", INFO, creds, nonce="n"), now=NOW)
    assert verifier.verify(make_request("GET", INFO, other, nonce="n"), now=NOW)


def test_a_refused_request_does_not_burn_its_nonce(verifier, creds):
    stale = make_request("GET", INFO, creds, nonce="n", ts_offset=5000)
    refused(verifier, stale, "stale")
    header = hawk_header("GET", NODE + INFO, creds, nonce="n", now=NOW)
    mac = header_attributes(header)["mac"]
    refused(verifier, make_request("GET", INFO, creds, header=header.replace(mac, flipped(mac))),
            "bad MAC")
    assert verifier.verify(make_request("GET", INFO, creds, header=header), now=NOW)


def test_replay_with_unpadded_token_id_is_still_a_replay(verifier):
    for length in (1, 2, 3):  # one of three payload lengths gives an id that needs padding
        creds = mint_token(42, NODE, SECRET, now=NOW, fxa_uid="a" * length)
        if creds.id.endswith("="):
            break
    header = hawk_header("GET", NODE + INFO, creds, nonce="n", now=NOW)
    assert verifier.verify(make_request("GET", INFO, creds, header=header), now=NOW)
    unpadded = header.replace(creds.id, creds.id.rstrip("="))
    refused(verifier, make_request("GET", INFO, creds, header=unpadded), "nonce")


def test_nonce_cache_down_is_not_an_auth_failure(creds, redis_url, redis_server):
    from tests.web.test_nonces import redis_restored

    cache = RedisNonceCache.from_url(redis_url)
    verifier = HawkVerifier([SECRET], NODE, cache)
    try:
        assert verifier.verify(make_request("GET", INFO, creds), now=NOW).uid == 42
        with redis_restored(redis_server):
            redis_server.stop()
            with pytest.raises(NonceCacheUnavailable):  # the app answers 503, not 401
                verifier.verify(make_request("GET", INFO, creds), now=NOW)
    finally:
        cache.close()


# -- payload hash ---------------------------------------------------------------------------

BODY = b'[{"id": "a", "payload": "x"}]'


def test_payload_hash_good(verifier, creds):
    request = make_request("POST", "/1.5/42/storage/tabs", creds, body=BODY,
                           content_type="application/json; charset=UTF-8", hash_payload=True)
    assert "hash=" in request.environ["HTTP_AUTHORIZATION"]
    assert verifier.verify(request, now=NOW).uid == 42
    assert request.body == BODY  # still readable by the controller


def test_payload_hash_bad_body(verifier, creds):
    request = make_request("POST", "/1.5/42/storage/tabs", creds, body=BODY,
                           content_type="application/json", hash_payload=True)
    request.body = BODY.replace(b"x", b"y")
    refused(verifier, request, "payload hash")


def test_payload_hash_bad_content_type(verifier, creds):
    request = make_request("POST", "/1.5/42/storage/tabs", creds, body=BODY,
                           content_type="application/json", hash_payload=True)
    request.content_type = "text/plain"
    refused(verifier, request, "payload hash")


def test_payload_hash_absent_is_fine(verifier, creds):
    request = make_request("POST", "/1.5/42/storage/tabs", creds, body=BODY,
                           content_type="text/plain")
    assert "hash=" not in request.environ["HTTP_AUTHORIZATION"]
    assert verifier.verify(request, now=NOW).uid == 42


def test_payload_hash_formula():
    import base64
    import hashlib

    expected = base64.b64encode(hashlib.sha256(
        b"hawk.1.payload\napplication/json\n" + BODY + b"\n").digest()).decode()
    assert payload_hash("Application/JSON ; charset=utf-8", BODY) == expected
    assert payload_hash(None, b"") == base64.b64encode(
        hashlib.sha256(b"hawk.1.payload\n\n\n").digest()).decode()


# -- token expiry, node and secrets ---------------------------------------------------------------

def test_expired_token_refused(verifier, creds):
    later = NOW + 3600
    request = make_request("GET", "/1.5/42/storage/tabs", creds)
    with pytest.raises(HawkAuthError, match="expired"):
        verifier.verify(request, now=later)


def test_a_token_verified_before_is_still_refused_once_expired(verifier, creds):
    fresh = make_request("GET", "/1.5/42/storage/tabs", creds)
    assert verifier.verify(fresh, now=NOW).uid == 42
    assert len(verifier.tokens) == 1  # remembered: the next request skips the token's crypto
    later = NOW + 3600
    request = make_request("GET", "/1.5/42/storage/tabs", creds, ts_offset=3600)
    with pytest.raises(HawkAuthError, match="expired"):
        verifier.verify(request, now=later)


def test_a_remembered_token_still_needs_a_good_mac_and_a_fresh_nonce(verifier, creds):
    first = make_request("GET", INFO, creds, nonce="bm9uY2UxMjM=")
    assert verifier.verify(first, now=NOW).uid == 42
    refused(verifier, make_request("GET", INFO, creds, nonce="bm9uY2UxMjM="), "nonce")
    forged = Credentials(creds.id, "not-the-derived-key")
    refused(verifier, make_request("GET", INFO, forged), "bad MAC")
    assert verifier.verify(make_request("GET", INFO, creds), now=NOW).uid == 42


def test_expired_token_on_info_collections_within_two_hours(creds):
    verifier = HawkVerifier([SECRET], NODE, MemoryNonceCache())
    grace = expired_token_grace("GET", INFO)
    assert grace == INFO_COLLECTIONS_GRACE_SECONDS == 7200
    expires = NOW + 3600
    just_before_end = expires + grace - 1
    request = make_request("GET", INFO, creds, ts_offset=just_before_end - NOW)
    assert verifier.verify(request, allow_expired_seconds=grace, now=just_before_end).uid == 42
    after = expires + grace
    request = make_request("GET", INFO, creds, ts_offset=after - NOW)
    with pytest.raises(HawkAuthError, match="expired"):
        verifier.verify(request, allow_expired_seconds=grace, now=after)


@pytest.mark.parametrize("method,path", [
    ("POST", INFO), ("DELETE", INFO), ("GET", "/1.5/42/storage/info/collections"),
    ("GET", "/1.5/42/info/collections/"), ("GET", "/1.5/42/info/collection_counts"),
    ("GET", "/sync/1.5/42/info/collections"), ("GET", "/1.5/abc/info/collections"),
    ("GET", "/1.5/42/info/collectionsX"), ("GET", ""), ("GET", None),
])
def test_no_grace_anywhere_else(method, path):
    assert expired_token_grace(method, path) == 0


@pytest.mark.parametrize("node", [
    "https://SYNC.example.com:443/", "https://sync.example.com/", "HTTPS://sync.example.com"])
def test_token_node_is_compared_normalized(verifier, node):
    creds = mint_token(42, node, SECRET, now=NOW)
    assert verifier.verify(make_request("GET", INFO, creds), now=NOW).uid == 42


@pytest.mark.parametrize("node", [
    "https://other.example.com", "https://sync.example.com:8443", "http://sync.example.com",
    "https://sync.example.com/sync", "not a url", ""])
def test_token_for_another_node(verifier, node):
    creds = mint_token(42, node, SECRET, now=NOW)
    refused(verifier, make_request("GET", INFO, creds), "another node")


def test_token_signed_by_an_old_secret_still_listed(creds):
    verifier = HawkVerifier(["new secret", SECRET], NODE, MemoryNonceCache())
    assert verifier.verify(make_request("GET", INFO, creds), now=NOW).uid == 42


def test_token_signed_by_a_secret_not_listed(creds):
    verifier = HawkVerifier(["new secret", "newer secret"], NODE, MemoryNonceCache())
    refused(verifier, make_request("GET", INFO, creds), "signature")


def test_forged_key_with_valid_looking_token_id(verifier, creds):
    forged = Credentials(creds.id, "A" * 43 + "=")
    refused(verifier, make_request("GET", INFO, forged), "bad MAC")


# -- raw targets and prefixes, end to end ----------------------------------------------------------

@pytest.mark.parametrize("raw", ["REQUEST_URI", "RAW_URI", None])
@pytest.mark.parametrize("path", [
    ITEM, "/1.5/42/storage/tabs/abc%3D%3D", "/1.5/42/storage/forms/with%20space",
    "/1.5/42/storage/history/tilde~id", "/1.5/42/storage/tabs?batch=MTIz%3D&commit=true"])
def test_raw_and_rebuilt_targets(verifier, creds, raw, path):
    assert verifier.verify(make_request("GET", path, creds, raw=raw), now=NOW).uid == 42


def test_only_the_raw_target_saves_ids_encoded_unlike_desktop(verifier, creds):
    path = "/1.5/42/storage/tabs/abc=="  # the Rust client leaves "=" bare
    assert verifier.verify(make_request("GET", path, creds, raw="RAW_URI"), now=NOW)
    refused(verifier, make_request("GET", path, creds, raw=None), "bad MAC")


@pytest.mark.parametrize("raw", ["REQUEST_URI", None])
def test_app_mounted_under_script_name(raw):
    node = "https://sync.example.com/sync"
    verifier = HawkVerifier([SECRET], node, MemoryNonceCache())
    creds = mint_token(42, node, SECRET, now=NOW)
    request = make_request("GET", ITEM, creds, node=node, raw=raw, script_name="/sync")
    assert verifier.verify(request, now=NOW).uid == 42


@pytest.mark.parametrize("raw", ["RAW_URI", None])
def test_prefix_stripped_by_a_proxy(raw):
    node = "https://sync.example.com/sync"
    verifier = HawkVerifier([SECRET], node, MemoryNonceCache())
    creds = mint_token(42, node, SECRET, now=NOW)
    assert verifier.verify(make_request("GET", ITEM, creds, node=node, raw=raw), now=NOW).uid == 42


def test_prefix_not_configured_fails(creds):
    """A client that used /sync, while the node URL says root: its MAC cannot match."""
    request = make_request("GET", ITEM, creds, signed_url=NODE + "/sync" + ITEM)
    refused(HawkVerifier([SECRET], NODE, MemoryNonceCache()), request, "bad MAC")


# -- malformed headers ------------------------------------------------------------------------------

GOOD = 'id="{id}", ts="1700000000", nonce="bm9uY2U=", mac="AAAA"'


@pytest.mark.parametrize("header,reason", [
    (False, "no Authorization"),
    ("", "not Hawk"),
    ("   ", "not Hawk"),
    ("Basic dXNlcjpwYXNz", "not Hawk"),
    ("Bearer abc", "not Hawk"),
    ("hawk " + GOOD, "not Hawk"),
    ("HAWK " + GOOD, "not Hawk"),
    ("Hawk", "malformed"),
    ("Hawk ", "malformed"),
    ("Hawk id", "malformed"),
    ('Hawk id="abc', "malformed"),
    ('Hawk id="a"b", ts="1", nonce="n", mac="m"', "malformed"),
    ('Hawk id="a", ts="1", nonce="n", mac="m",', "malformed"),
    ('Hawk id="a",, ts="1", nonce="n", mac="m"', "malformed"),
    ('Hawk id="a" ts="1", nonce="n", mac="m"', "malformed"),
    ('Hawk , id="a", ts="1", nonce="n", mac="m"', "malformed"),
    ('Hawk id="a", ts="1", nonce="n", mac="m", scheme="Basic"', "malformed"),
    ('Hawk ts="1", nonce="n", mac="m"', "lacks id"),
    ('Hawk id="a", nonce="n", mac="m"', "lacks ts"),
    ('Hawk id="a", ts="1", mac="m"', "lacks nonce"),
    ('Hawk id="a", ts="1", nonce="n"', "lacks mac"),
    ('Hawk id="", ts="1", nonce="n", mac="m"', "lacks id"),
    ('Hawk id="a", ts="1", nonce="", mac="m"', "lacks nonce"),
    ('Hawk id="a", ts="12a", nonce="n", mac="m"', "ts is not an integer"),
    ('Hawk id="a", ts="-5", nonce="n", mac="m"', "ts is not an integer"),
    ('Hawk id="a", ts="1.5", nonce="n", mac="m"', "ts is not an integer"),
    ('Hawk id="a", ts="' + "9" * 5000 + '", nonce="n", mac="m"', "ts is not an integer"),
    ('Hawk id="a", ts=" 1", nonce="n", mac="m"', "ts is not an integer"),
    ('Hawk id="é", ts="1", nonce="n", mac="m"', "printable ASCII"),
    ('Hawk id="\xc3\xa9", ts="1", nonce="n", mac="m"', "printable ASCII"),  # UTF-8 seen as latin-1
    ('Hawk id="a", ts="1", nonce="n\x00", mac="m"', "printable ASCII"),
    ('Hawk id="a", ts="1", nonce="n\r\nX-Evil: 1", mac="m"', "printable ASCII"),
    ("Hawk id=\"" + "a" * 9000 + "\"", "too long"),
    ('Hawk id="a", ts="1", nonce="n", mac="m"', "not urlsafe base64"),
    ('Hawk id="!!!!", ts="1", nonce="n", mac="m"', "not urlsafe base64"),
    ('Hawk id="QUJDRA", ts="1", nonce="n", mac="m"', "too short"),
])
def test_malformed_headers(verifier, header, reason):
    request = make_request("GET", INFO, None, header=header)
    refused(verifier, request, reason)


def test_quoted_values_with_escapes_and_commas(verifier, creds):
    nonce = 'a,b"c\\d'
    ts = str(NOW)
    mac = hawk_mac(creds.key, ts, nonce, "GET", INFO, "sync.example.com", 443)
    escaped = nonce.replace("\\", "\\\\").replace('"', '\\"')
    header = f'Hawk id="{creds.id}", ts="{ts}", nonce="{escaped}", mac="{mac}"'
    assert verifier.verify(make_request("GET", INFO, creds, header=header), now=NOW).uid == 42


def test_unquoted_token_values_and_extra_whitespace(verifier, creds):
    ts = str(NOW)
    mac = hawk_mac(creds.key, ts, "n0nce", "GET", INFO, "sync.example.com", 443)
    header = f'Hawk   id="{creds.id}" ,ts={ts},\tnonce=n0nce,  mac="{mac}", app="ignored"'
    assert verifier.verify(make_request("GET", INFO, creds, header=header), now=NOW).uid == 42


def test_ext_is_signed(verifier, creds):
    header = hawk_header("GET", NODE + INFO, creds, ext="some-ext", now=NOW)
    assert verifier.verify(make_request("GET", INFO, creds, header=header), now=NOW)
    tampered = header.replace('ext="some-ext"', 'ext="other"')
    refused(verifier, make_request("GET", INFO, creds, header=tampered), "bad MAC")


# -- uid helper, logging, construction -------------------------------------------------------------------

def test_require_uid(creds):
    token = HawkVerifier([SECRET], NODE, MemoryNonceCache()).verify(
        make_request("GET", INFO, creds), now=NOW)
    require_uid(token, "42")
    for other in ("43", "", "4 2", "abc", "42x", "1" * 11, None, 42):
        with pytest.raises(HawkAuthError, match="uid"):
            require_uid(token, other)


def test_failures_log_reason_and_client_but_nothing_secret(verifier, creds, caplog):
    caplog.set_level(logging.INFO, logger="syncserver.security")
    header = hawk_header("GET", NODE + INFO, creds, now=NOW)
    mac = header_attributes(header)["mac"]
    request = make_request("GET", INFO, creds, header=header.replace(mac, flipped(mac)))
    request.environ[CLIENT_ADDRESS_KEY] = "203.0.113.9"
    refused(verifier, request, "bad MAC")
    request = make_request("GET", INFO, creds, ts_offset=5000)
    refused(verifier, request, "stale")
    messages = [r.getMessage() for r in caplog.records if r.name == "syncserver.security"]
    assert len(messages) == 2
    assert "bad MAC" in messages[0] and "203.0.113.9" in messages[0]
    for message in messages:
        for secret_thing in (creds.id[:20], creds.key, mac[1:], SECRET):
            assert secret_thing not in message


def test_construction_is_checked():
    with pytest.raises(ValueError, match="nonce cache window"):
        HawkVerifier([SECRET], NODE, MemoryNonceCache(window=60))
    for secrets in ([], "s3cr3t", [""], [None]):
        with pytest.raises(ValueError, match="secrets"):
            HawkVerifier(secrets, NODE, MemoryNonceCache())
    with pytest.raises(ValueError, match="scheme"):
        HawkVerifier([SECRET], "sync.example.com", MemoryNonceCache())
    with pytest.raises(ValueError, match="skew"):
        HawkVerifier([SECRET], NODE, MemoryNonceCache(), skew_seconds=0)


# -- anything at all ---------------------------------------------------------------------------

_TOKENISH = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=",
                    max_size=400)
_VALUE = st.one_of(st.text(max_size=40), st.text(alphabet='abc,="\\ \t', max_size=20))


def _attribute_headers():
    attribute = st.tuples(st.sampled_from(["id", "ts", "nonce", "mac", "hash", "ext", "scheme", "x"]),
                          _VALUE, st.booleans())
    return st.lists(attribute, max_size=7).map(
        lambda attributes: "Hawk " + ", ".join(
            f'{name}="{value}"' if quoted else f"{name}={value}"
            for name, value, quoted in attributes))


@settings(max_examples=300, deadline=None)
@given(header=st.one_of(st.text(max_size=300), _attribute_headers(),
                        st.builds(lambda token_id, ts, nonce: (
                            f'Hawk id="{token_id}", ts="{ts}", nonce="{nonce}", mac="AAAA"'),
                            _TOKENISH, st.integers(min_value=0, max_value=10**13),
                            st.text(max_size=20))))
def test_arbitrary_headers_only_ever_raise_hawk_auth_error(header):
    verifier = HawkVerifier([SECRET, "other"], NODE, MemoryNonceCache())
    request = webob.Request.blank(INFO)
    request.environ["HTTP_AUTHORIZATION"] = header
    with pytest.raises(HawkAuthError):
        verifier.verify(request, now=NOW)


_LATIN1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=60)


@settings(max_examples=200, deadline=None)
@given(path=_LATIN1, raw=st.one_of(st.none(), _LATIN1), script_name=_LATIN1, query=_LATIN1)
def test_arbitrary_paths_with_a_valid_token(path, raw, script_name, query):
    """WSGI strings hold latin-1 characters only; any of them, anywhere, is just a bad MAC."""
    verifier = HawkVerifier([SECRET], NODE, MemoryNonceCache())
    creds = mint_token(42, NODE, SECRET, now=NOW)
    request = webob.Request.blank("/")
    request.environ.update(PATH_INFO=path, SCRIPT_NAME=script_name, QUERY_STRING=query)
    if raw is not None:
        request.environ["REQUEST_URI"] = raw
    request.environ["HTTP_AUTHORIZATION"] = (
        f'Hawk id="{creds.id}", ts="{NOW}", nonce="n", mac="AAAA"')
    with pytest.raises(HawkAuthError, match="bad MAC"):
        verifier.verify(request, now=NOW)
