"""OAuthVerifier's signing keys: fetched lazily, cached, refreshed on rotation, pinned, and
what an accounts-server outage turns into (503, never 401).

The fake server counts its JWKS requests; a hand-moved clock stands in for
the passing of hours.
"""

import json
import threading

import pytest
from jwt.algorithms import RSAAlgorithm

from syncserver.errors import ConfigError
from syncserver.tokenserver.oauth import (
    AccountsServerUnavailable,
    InvalidAccessToken,
    OAuthSettings,
    OAuthVerifier,
)
from tests.fxa_server import FakeAccountsServer, SigningKey

# --- Caching -----------------------------------------------------------------


def test_keys_are_fetched_on_first_use_then_cached(fxa, verifier):
    assert fxa.jwks_fetches == 0  # construction never touches the network
    for _ in range(5):
        verifier.verify(fxa.mint())
    assert fxa.jwks_fetches == 1


def test_keys_are_fetched_again_when_the_cache_expires(fxa, make_verifier, clock):
    verifier = make_verifier(jwks_cache_seconds=600)
    verifier.verify(fxa.mint())
    clock.advance(599)
    verifier.verify(fxa.mint())
    assert fxa.jwks_fetches == 1
    clock.advance(1)
    verifier.verify(fxa.mint())
    assert fxa.jwks_fetches == 2


def test_a_new_key_is_fetched_as_soon_as_a_token_names_it(fxa, make_verifier, clock):
    verifier = make_verifier(jwks_refetch_seconds=30)
    verifier.verify(fxa.mint())
    clock.advance(30)
    new_key = fxa.add_key()
    assert verifier.verify(fxa.mint(key=new_key))
    assert fxa.jwks_fetches == 2
    verifier.verify(fxa.mint(key=new_key))
    assert fxa.jwks_fetches == 2


def test_a_retired_key_fails_once_the_cache_is_refreshed(fxa, make_verifier, clock):
    verifier = make_verifier(jwks_cache_seconds=3600)
    old_key = fxa.active_key
    old_token = fxa.mint()
    assert verifier.verify(old_token)
    fxa.add_key()
    fxa.retire_key(old_key)
    assert verifier.verify(old_token)  # still trusted until the cache expires
    clock.advance(3600)
    assert verifier.verify(fxa.mint())  # refreshes the cache
    with pytest.raises(InvalidAccessToken, match="does not publish"):
        verifier.verify(old_token)


def test_junk_key_ids_cause_at_most_one_fetch_per_interval(fxa, make_verifier, clock):
    verifier = make_verifier(jwks_refetch_seconds=30)
    verifier.verify(fxa.mint())
    for number in range(40):
        with pytest.raises(InvalidAccessToken):
            verifier.verify(fxa.mint(header={"kid": f"junk-{number}"}))
    assert fxa.jwks_fetches == 1
    clock.advance(30)
    for number in range(40):
        with pytest.raises(InvalidAccessToken):
            verifier.verify(fxa.mint(header={"kid": f"more-junk-{number}"}))
    assert fxa.jwks_fetches == 2


def test_concurrent_first_requests_share_one_fetch(fxa, verifier):
    fxa.delay = 0.2  # keeps the first fetch in flight while the others arrive
    tokens = [fxa.mint() for _ in range(8)]
    barrier = threading.Barrier(len(tokens))
    results, errors = [], []

    def verify(token):
        barrier.wait()
        try:
            results.append(verifier.verify(token))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=verify, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == len(tokens)
    assert fxa.jwks_fetches == 1


def test_keys_of_other_types_are_ignored(fxa, verifier):
    document = fxa.jwks()
    document["keys"][:0] = [
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"},
        {"kty": "RSA", "alg": "RS512", "kid": "rs512", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "garbage", "n": "!!!", "e": "AQAB"},
        "not a key",
        dict(SigningKey.generate(bits=1024).jwk(), kid="weak"),
    ]
    fxa.jwks_body = document
    assert verifier.verify(fxa.mint())
    with pytest.raises(InvalidAccessToken):
        verifier.verify(fxa.mint(key=SigningKey.generate(bits=1024, kid="weak")))


# --- Pinned keys -------------------------------------------------------------


def test_pinned_keys_need_no_server(fxa, tmp_path):
    document = json.dumps(fxa.jwks())
    tokens = [fxa.mint(), fxa.mint()]
    fxa.stop()
    path = tmp_path / "jwks.json"
    path.write_text(document)
    for pinned in (document, str(path)):
        verifier = OAuthVerifier(OAuthSettings(server_url=fxa.url, jwks=pinned))
        for token in tokens:
            assert verifier.verify(token)
        with pytest.raises(InvalidAccessToken):
            verifier.verify(fxa.mint(header={"kid": "unknown"}))
        assert "1 RSA signing key(s) pinned" in verifier.check()
    assert fxa.jwks_fetches == 0


def test_pinned_private_keys_are_read_as_public_ones(fxa):
    private_jwk = json.loads(RSAAlgorithm.to_jwk(fxa.active_key.private_key))
    private_jwk["kid"] = fxa.active_key.kid
    verifier = OAuthVerifier(OAuthSettings(jwks=json.dumps({"keys": [private_jwk]})))
    assert verifier.verify(fxa.mint())


@pytest.mark.parametrize("pinned", [
    "{not json",
    '{"keys": 3}',
    '{"keys": []}',
    '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}',
    "/nonexistent/jwks.json",
])
def test_bad_pinned_keys_fail_at_start(pinned):
    with pytest.raises(ConfigError, match=r"tokenserver\.oauth_jwks"):
        OAuthVerifier(OAuthSettings(jwks=pinned))


def test_pinned_weak_keys_fail_at_start():
    weak = json.dumps({"keys": [SigningKey.generate(bits=1024).jwk()]})
    with pytest.raises(ConfigError, match="2048"):
        OAuthVerifier(OAuthSettings(jwks=weak))


# --- Outages: 503, never 401 ----------------------------------------------------


def test_a_stopped_server_is_unavailable_not_invalid(fxa, verifier):
    token = fxa.mint()
    fxa.stop()
    with pytest.raises(AccountsServerUnavailable):
        verifier.verify(token)


def test_a_slow_server_is_unavailable(fxa, make_verifier):
    fxa.delay = 5
    verifier = make_verifier(timeout=0.3)
    with pytest.raises(AccountsServerUnavailable, match="did not answer"):
        verifier.verify(fxa.mint())


@pytest.mark.parametrize("status", [500, 502, 503, 429, 404])
def test_an_error_status_is_unavailable(fxa, verifier, status):
    fxa.status = status
    with pytest.raises(AccountsServerUnavailable, match=str(status)):
        verifier.verify(fxa.mint())


def test_a_wrong_server_url_is_unavailable(fxa, make_verifier):
    verifier = make_verifier(server_url=fxa.url.replace("/v1", "/elsewhere"))
    with pytest.raises(AccountsServerUnavailable, match="404"):
        verifier.verify(fxa.mint())


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[]", b'{"keys": "none"}', b"",
                                  b"\xff\xfe", b"[" * 100_000])
def test_an_unparsable_jwks_is_unavailable(fxa, verifier, body):
    fxa.jwks_body = body
    with pytest.raises(AccountsServerUnavailable):
        verifier.verify(fxa.mint())


def test_cached_keys_outlive_an_outage(fxa, make_verifier, clock, caplog):
    verifier = make_verifier(jwks_cache_seconds=3600)
    assert verifier.verify(fxa.mint())
    tokens = [fxa.mint() for _ in range(3)]
    fxa.stop()
    clock.advance(7200)
    for token in tokens:
        assert verifier.verify(token)
    assert "still using the ones fetched 7200 s ago" in caplog.text
    assert caplog.text.count("still using") == 1  # one attempt per refetch interval


def test_failed_fetches_are_retried_at_most_once_per_interval(fxa, make_verifier, clock):
    fxa.status = 500
    verifier = make_verifier(jwks_refetch_seconds=30)
    token = fxa.mint()
    for _ in range(3):
        with pytest.raises(AccountsServerUnavailable):
            verifier.verify(token)
    assert fxa.jwks_fetches == 1
    fxa.status = None
    clock.advance(30)
    assert verifier.verify(token)
    assert fxa.jwks_fetches == 2


# --- HTTPS ---------------------------------------------------------------------


@pytest.fixture
def tls_fxa(certificate):
    server = FakeAccountsServer(tls_files=certificate).start()
    yield server
    server.stop()


def test_https_with_a_ca_file(tls_fxa, certificate, clock):
    assert tls_fxa.url.startswith("https://")
    verifier = OAuthVerifier(OAuthSettings(server_url=tls_fxa.url, ca_file=str(certificate[0])),
                             clock=clock)
    assert verifier.verify(tls_fxa.mint())
    assert verifier.verify(tls_fxa.mint_opaque())


def test_https_without_the_ca_is_unavailable(tls_fxa):
    verifier = OAuthVerifier(OAuthSettings(server_url=tls_fxa.url))
    with pytest.raises(AccountsServerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        verifier.verify(tls_fxa.mint())


# --- syncserver-admin check ------------------------------------------------------


def test_check_fetches_now_and_counts_the_keys(fxa, verifier):
    fxa.add_key()
    assert verifier.check() == f"2 RSA signing key(s) at {fxa.url}/jwks"
    assert verifier.check()
    assert fxa.jwks_fetches == 2  # each check asks again
    verifier.verify(fxa.mint())
    assert fxa.jwks_fetches == 2  # and fills the cache


def test_check_fails_without_usable_keys_or_server(fxa, verifier):
    fxa.jwks_body = {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}
    with pytest.raises(AccountsServerUnavailable, match="no usable RSA"):
        verifier.check()
    fxa.stop()
    with pytest.raises(AccountsServerUnavailable):
        verifier.check()
