"""OAuthVerifier: which access tokens pass, which fail, and that failures are only ever 401s.

Every token here is minted by the fake accounts server (tests/fxa_server.py)
and its keys are fetched over HTTP, as in production. JWKS caching, outages
and the remote-verify fallback have their own modules.
"""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncserver.errors import ConfigError
from syncserver.tokenserver.oauth import (
    OLDSYNC_SCOPE,
    InvalidAccessToken,
    OAuthSettings,
    OAuthVerifier,
    VerifiedAccessToken,
)
from tests.fxa_server import FIREFOX_CLIENT_ID, ISSUER, OMIT, SigningKey


def test_a_token_as_fxa_issues_it_verifies(fxa, verifier):
    token = fxa.mint({"sub": "0123456789abcdef0123456789abcdef", "fxa-generation": 1588194534000})
    assert verifier.verify(token) == VerifiedAccessToken(
        fxa_uid="0123456789abcdef0123456789abcdef", generation=1588194534000,
        client_id=FIREFOX_CLIENT_ID, scope=("profile", OLDSYNC_SCOPE))


@pytest.mark.parametrize("generation", [0, None, OMIT])
def test_generation_zero_or_absent_means_none(fxa, verifier, generation):
    assert verifier.verify(fxa.mint({"fxa-generation": generation})).generation is None


@pytest.mark.parametrize("scope", [
    OLDSYNC_SCOPE,
    f"profile,{OLDSYNC_SCOPE}",
    f"profile, {OLDSYNC_SCOPE} ,other",
    f"{OLDSYNC_SCOPE}\tprofile\n",
    f"  {OLDSYNC_SCOPE}",
])
def test_scope_is_split_on_whitespace_and_commas(fxa, verifier, scope):
    assert OLDSYNC_SCOPE in verifier.verify(fxa.mint({"scope": scope})).scope


@pytest.mark.parametrize("typ", ["at+JWT", "at+jwt", "AT+JWT", "application/at+jwt",
                                 "Application/AT+JWT"])
def test_typ_at_jwt_in_any_case_with_or_without_application(fxa, verifier, typ):
    assert verifier.verify(fxa.mint(header={"typ": typ}))


@pytest.mark.parametrize("aud", [OMIT, "https://token.services.mozilla.com",
                                 "https://sync.example.com", ["a", "b"]])
def test_audience_is_not_required(fxa, verifier, aud):
    """SS-4: FxA names Mozilla's tokenserver in aud; ours must accept it anyway."""
    assert verifier.verify(fxa.mint({"aud": aud}))


def test_a_client_id_in_an_unsafe_shape_is_dropped_not_fatal(fxa, verifier):
    assert verifier.verify(fxa.mint({"client_id": "a b\n"})).client_id is None
    assert verifier.verify(fxa.mint({"client_id": OMIT})).client_id is None


def test_a_token_without_kid_is_tried_against_each_key(fxa, verifier):
    newest = fxa.add_key()
    token = fxa.mint(key=newest, header={"kid": OMIT})
    assert verifier.verify(token)
    stranger = SigningKey.generate()
    with pytest.raises(InvalidAccessToken, match="bad signature"):
        verifier.verify(fxa.mint(key=stranger, header={"kid": OMIT}))


def test_the_issuer_can_be_pinned(fxa, make_verifier):
    strict = make_verifier(issuer=ISSUER)
    assert strict.verify(fxa.mint())
    with pytest.raises(InvalidAccessToken, match="issuer"):
        strict.verify(fxa.mint({"iss": "https://accounts.example.com"}))
    with pytest.raises(InvalidAccessToken, match="iss"):
        strict.verify(fxa.mint({"iss": OMIT}))
    assert make_verifier().verify(fxa.mint({"iss": "https://accounts.example.com"}))


def test_expiry_leeway(fxa, make_verifier):
    token = fxa.mint({"exp": int(time.time()) - 600})
    with pytest.raises(InvalidAccessToken, match="expired"):
        make_verifier().verify(token)
    assert make_verifier(leeway_seconds=3600).verify(token)


def test_iat_in_the_future_is_accepted(fxa, verifier):
    """Our clock may run behind FxA's: a fresh token must still pass."""
    assert verifier.verify(fxa.mint({"iat": int(time.time()) + 300}))


INVALID_CLAIMS = {
    "expired": {"exp": int(time.time()) - 60},
    "no exp": {"exp": OMIT},
    "exp as a string": {"exp": "99999999999"},
    "exp infinite": {"exp": float("inf")},
    "exp not a number": {"exp": float("nan")},
    "no scope": {"scope": OMIT},
    "other scope": {"scope": "profile https://identity.mozilla.com/apps/send"},
    "scope prefix only": {"scope": "https://identity.mozilla.com/apps/oldsyncx"},
    "scope with a suffix": {"scope": f"{OLDSYNC_SCOPE}:write"},
    "scope as a list": {"scope": [OLDSYNC_SCOPE]},
    "no sub": {"sub": OMIT},
    "empty sub": {"sub": ""},
    "sub with a space": {"sub": "abc def"},
    "sub with a newline": {"sub": "abcdef\n"},
    "sub too long": {"sub": "a" * 65},
    "sub not a string": {"sub": 1234},
    "negative generation": {"fxa-generation": -1},
    "generation as a string": {"fxa-generation": "1234"},
    "generation as a float": {"fxa-generation": 12.5},
    "generation as a boolean": {"fxa-generation": True},
    "generation past 64 bits": {"fxa-generation": 2**63},
    "nbf in the future": {"nbf": int(time.time()) + 3600},
}


@pytest.mark.parametrize("claims", INVALID_CLAIMS.values(), ids=INVALID_CLAIMS.keys())
def test_invalid_claims_are_refused(fxa, verifier, claims):
    with pytest.raises(InvalidAccessToken):
        verifier.verify(fxa.mint(claims))


def test_the_largest_generation_is_accepted(fxa, verifier):
    """2**63-1 marks a retired account (§1.6); the bookkeeping needs to see it."""
    assert verifier.verify(fxa.mint({"fxa-generation": 2**63 - 1})).generation == 2**63 - 1


INVALID_HEADERS = {
    "typ JWT": ({"typ": "JWT"}, "RS256"),
    "typ application/jwt": ({"typ": "application/jwt"}, "RS256"),
    "typ at+jwt with a suffix": ({"typ": "at+jwt; charset=x"}, "RS256"),
    "no typ": ({"typ": OMIT}, "RS256"),
    "typ not a string": ({"typ": 1}, "RS256"),
    "alg none": ({}, "none"),
    "alg none spelled None": ({"alg": "None"}, "none"),
    "HS256 keyed with the public key": ({}, "HS256"),
    "RS512": ({"alg": "RS512"}, "RS256"),
    "ES256": ({"alg": "ES256"}, "RS256"),
    "no alg": ({"alg": OMIT}, "RS256"),
    "unknown kid": ({"kid": "20250101-deadbeef"}, "RS256"),
    "kid not a string": ({"kid": 7}, "RS256"),
    "unsupported crit": ({"crit": ["exp"]}, "RS256"),
}


@pytest.mark.parametrize("header, alg", INVALID_HEADERS.values(), ids=INVALID_HEADERS.keys())
def test_invalid_headers_are_refused(fxa, verifier, header, alg):
    with pytest.raises(InvalidAccessToken):
        verifier.verify(fxa.mint(header=header, alg=alg))


def test_an_hmac_signature_under_an_rs256_header_is_refused(fxa, verifier):
    """Key confusion: the public key as an HMAC secret must never verify anything."""
    token = fxa.mint(alg="HS256", header={"alg": "RS256"})
    with pytest.raises(InvalidAccessToken, match="bad signature"):
        verifier.verify(token)


def test_a_key_nobody_publishes_is_refused_even_with_a_known_kid(fxa, verifier):
    stranger = SigningKey.generate(kid=fxa.active_key.kid)
    with pytest.raises(InvalidAccessToken, match="bad signature"):
        verifier.verify(fxa.mint(key=stranger))


def test_tampered_tokens_are_refused(fxa, verifier):
    token = fxa.mint()
    header, payload, signature = token.split(".")
    forged = fxa.mint({"sub": "f" * 32}).split(".")[1]
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    for bad in (f"{header}.{forged}.{signature}", f"{header}.{payload}.{flipped}",
                f"{header}.{payload}.", f"{header}.{payload}.{signature[:-4]}"):
        with pytest.raises(InvalidAccessToken):
            verifier.verify(bad)


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c", "....", "Bearer x", "é.é.é", "x" * 5000,
    None, b"bytes", 42,
])
def test_strings_that_are_not_tokens_are_refused_without_a_request(fxa, verifier, token):
    with pytest.raises(InvalidAccessToken):
        verifier.verify(token)
    assert (fxa.jwks_fetches, fxa.verify_requests) == (0, 0)


def test_the_token_is_never_logged_nor_in_errors(fxa, make_verifier, clock, caplog):
    caplog.set_level("DEBUG")
    verifier = make_verifier()
    tokens = [fxa.mint({"exp": 1}), fxa.mint(header={"typ": OMIT}),
              fxa.mint(header={"kid": "unknown"}), fxa.mint({"scope": "profile"}),
              fxa.mint_opaque(scope=("profile",))]
    messages = []
    for token in tokens:
        with pytest.raises(InvalidAccessToken) as caught:
            verifier.verify(token)
        messages.append(str(caught.value))
    fxa.stop()
    clock.advance(7200)
    good = fxa.mint()
    assert verifier.verify(good)  # with a warning: the stale keys are still used
    assert "still using" in caplog.text
    for token in [*tokens, good]:
        secret_part = token.split(".")[-1]
        assert secret_part not in caplog.text
        assert not any(secret_part in message for message in messages)


# --- Settings ----------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/",
                                 "http://127.0.0.1:9", "http://127.0.0.1:9/"])
def test_the_server_url_may_omit_v1(url):
    verifier = OAuthVerifier(OAuthSettings(server_url=url))
    assert verifier.jwks_url == "http://127.0.0.1:9/v1/jwks"


def test_the_default_server_is_mozillas_production_one():
    assert OAuthVerifier().jwks_url == "https://oauth.accounts.firefox.com/v1/jwks"


@pytest.mark.parametrize("options, key", [
    ({"server_url": "oauth.accounts.firefox.com"}, "oauth_server_url"),
    ({"server_url": "ftp://example.com/v1"}, "oauth_server_url"),
    ({"server_url": ""}, "oauth_server_url"),
    ({"jwks_cache_seconds": -1}, "oauth_jwks_cache_seconds"),
    ({"jwks_refetch_seconds": "soon"}, "oauth_jwks_refetch_seconds"),
    ({"leeway_seconds": float("nan")}, "oauth_leeway_seconds"),
    ({"timeout": 0}, "oauth_timeout"),
    ({"ca_file": "/nonexistent/ca.pem"}, "oauth_ca_file"),
])
def test_bad_settings_fail_at_start_naming_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        OAuthVerifier(OAuthSettings(**options))


# --- Arbitrary input never escapes as another exception --------------------------

def _assert_only_invalid_or_verified(verifier, token):
    try:
        result = verifier.verify(token)
    except InvalidAccessToken:
        return
    assert isinstance(result, VerifiedAccessToken)
    assert OLDSYNC_SCOPE in result.scope
    assert result.generation is None or 0 < result.generation < 2**63


HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(token=st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.lists(st.text("ABCDEFabcdef0123456789-_=+/", max_size=40), min_size=3, max_size=3)
    .map(".".join),
))
def test_arbitrary_strings_are_only_ever_invalid(fxa, verifier, token):
    _assert_only_invalid_or_verified(verifier, token)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8)
NOW = int(time.time())
CLAIM_VALUES = {
    "sub": st.one_of(st.just("0123456789abcdef0123456789abcdef"), JSON_VALUES),
    "scope": st.one_of(st.sampled_from([OLDSYNC_SCOPE, f"a,{OLDSYNC_SCOPE}", "profile"]),
                       JSON_VALUES),
    "exp": st.one_of(st.integers(NOW - 10, NOW + 10**6), JSON_VALUES),
    "iat": JSON_VALUES, "nbf": JSON_VALUES, "iss": JSON_VALUES, "aud": JSON_VALUES,
    "jti": JSON_VALUES, "client_id": JSON_VALUES,
    "fxa-generation": st.one_of(st.integers(-2**70, 2**70), JSON_VALUES),
}
HEADER_VALUES = {
    "alg": st.one_of(st.sampled_from(["RS256", "none", "HS256", "RS512"]), JSON_VALUES),
    "typ": st.one_of(st.sampled_from(["at+JWT", "JWT", "application/at+jwt"]), JSON_VALUES),
    "kid": JSON_VALUES, "crit": JSON_VALUES, "b64": JSON_VALUES, "jku": JSON_VALUES,
}


def _partial_dicts(fields):
    return st.fixed_dictionaries({}, optional=fields)


@HYPOTHESIS
@given(header=_partial_dicts(HEADER_VALUES), claims=_partial_dicts(CLAIM_VALUES),
       real_kid=st.booleans(), extra=st.dictionaries(st.text(max_size=8), JSON_VALUES,
                                                      max_size=2))
def test_arbitrary_signed_headers_and_claims_are_only_ever_invalid(fxa, verifier, header,
                                                                      claims, real_kid, extra):
    if real_kid:
        header["kid"] = fxa.active_key.kid
    token = fxa.sign(header, {**extra, **claims}, key=fxa.active_key)
    _assert_only_invalid_or_verified(verifier, token)


def test_arbitrary_json_documents_as_headers(fxa, verifier):
    """Headers that are not objects at all: arrays, strings, numbers."""
    for header in ([], "RS256", 3, None, [{"alg": "RS256"}]):
        token = fxa.sign(header, {"sub": "x"}, key=fxa.active_key)
        with pytest.raises(InvalidAccessToken):
            verifier.verify(token)
    raw = fxa.sign({"alg": "RS256", "typ": "at+JWT"}, [1, 2], key=fxa.active_key)
    with pytest.raises(InvalidAccessToken):
        verifier.verify(raw)


def test_blank_optional_settings_mean_unset(fxa, make_verifier):
    """An ini key left empty must not pin an empty JWKS, a CA file named '' or iss ''."""
    verifier = make_verifier(jwks="  ", ca_file="", issuer="")
    assert verifier.verify(fxa.mint())
    assert fxa.jwks_fetches == 1
