"""OAuthVerifier's remote-verify fallback (``POST /v1/verify``), for the tokens it cannot
check itself: FxA's opaque tokens, and any token when the JWKS has no RSA key.
"""

import pytest

from syncserver.tokenserver.oauth import (
    OLDSYNC_SCOPE,
    AccountsServerUnavailable,
    InvalidAccessToken,
    VerifiedAccessToken,
)
from tests.fxa_server import FIREFOX_CLIENT_ID

EC_ONLY_JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"}]}


def test_an_opaque_token_is_verified_by_the_accounts_server(fxa, verifier):
    token = fxa.mint_opaque(user="abcdef0123456789abcdef0123456789", generation=1234,
                            scope=("profile", OLDSYNC_SCOPE))
    assert verifier.verify(token) == VerifiedAccessToken(
        fxa_uid="abcdef0123456789abcdef0123456789", generation=1234,
        client_id=FIREFOX_CLIENT_ID, scope=("profile", OLDSYNC_SCOPE))
    assert (fxa.verify_requests, fxa.jwks_fetches) == (1, 0)


@pytest.mark.parametrize("generation", [None, 0])
def test_a_remote_answer_without_generation_means_none(fxa, verifier, generation):
    assert verifier.verify(fxa.mint_opaque(generation=generation)).generation is None


@pytest.mark.parametrize("token_options", [
    {"scope": ("profile",)},
    {"scope": (f"profile {OLDSYNC_SCOPE}",)},  # one scope string that contains a space
    {"user": "not a safe id"},
    {"generation": -5},
    {"lifetime": -10},  # FxA answers 400 errno 115
])
def test_remote_answers_pass_the_same_checks(fxa, verifier, token_options):
    with pytest.raises(InvalidAccessToken):
        verifier.verify(fxa.mint_opaque(**token_options))


def test_a_token_the_accounts_server_does_not_know_is_invalid(fxa, verifier):
    with pytest.raises(InvalidAccessToken, match="errno 108"):
        verifier.verify("ab" * 32)
    assert fxa.verify_requests == 1


@pytest.mark.parametrize("answer", [(400, {"errno": 109}), (401, {"errno": 110}),
                                    (400, b"not json")])
def test_refusals_are_invalid(fxa, verifier, answer):
    fxa.verify_answer = answer
    with pytest.raises(InvalidAccessToken):
        verifier.verify(fxa.mint_opaque())


@pytest.mark.parametrize("answer", [
    (500, {"errno": 999}), (503, b""), (404, {}), (403, {"retryAfter": 30}), (429, {}),
    (200, b"<html>"), (200, []), (200, {"user": "abc"}), (200, {"scope": "a b", "user": "x"}),
])
def test_trouble_at_the_accounts_server_is_unavailable(fxa, verifier, answer):
    fxa.verify_answer = answer
    with pytest.raises(AccountsServerUnavailable):
        verifier.verify(fxa.mint_opaque())


def test_a_slow_or_stopped_verify_endpoint_is_unavailable(fxa, make_verifier):
    verifier = make_verifier(timeout=0.3)
    token = fxa.mint_opaque()
    fxa.delay = 5
    with pytest.raises(AccountsServerUnavailable):
        verifier.verify(token)
    fxa.stop()
    with pytest.raises(AccountsServerUnavailable):
        verifier.verify(token)


def test_remote_verification_can_be_turned_off(fxa, make_verifier):
    verifier = make_verifier(remote_verify=False)
    with pytest.raises(InvalidAccessToken, match="remote_verify"):
        verifier.verify(fxa.mint_opaque())
    assert fxa.verify_requests == 0


@pytest.mark.parametrize("token", ["AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32])
def test_only_fxa_shaped_opaque_tokens_are_sent(fxa, verifier, token):
    """FxA's verify endpoint takes 64 lower-case hex digits or a JWT; nothing else is asked."""
    with pytest.raises(InvalidAccessToken):
        verifier.verify(token)
    assert fxa.verify_requests == 0


def test_a_jwks_without_rsa_keys_sends_jwts_to_the_accounts_server(fxa, verifier):
    fxa.jwks_body = EC_ONLY_JWKS
    token = fxa.mint({"sub": "0123456789abcdef0123456789abcdef"})
    assert verifier.verify(token).fxa_uid == "0123456789abcdef0123456789abcdef"
    assert fxa.verify_requests == 1
    with pytest.raises(InvalidAccessToken):
        verifier.verify(fxa.mint({"scope": "profile"}))
    with pytest.raises(InvalidAccessToken, match="errno 115"):
        verifier.verify(fxa.mint({"exp": 1}))


def test_refused_local_checks_never_fall_back(fxa, verifier):
    """A JWT the keys refuse is invalid: FxA is not asked for a second opinion."""
    for token in (fxa.mint({"exp": 1}), fxa.mint(header={"kid": "unknown"}),
                  fxa.mint(alg="none")):
        with pytest.raises(InvalidAccessToken):
            verifier.verify(token)
    assert fxa.verify_requests == 0
