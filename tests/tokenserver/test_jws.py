"""syncserver.tokenserver.jws: the RS256 check that replaced ``jwt.decode``, compared with it.

Each case is also decided by PyJWT with the options the verifier used, so
the faster check accepts exactly what PyJWT accepted (tests/tokenserver/
test_oauth.py covers the verifier's own rules on top).
"""

import time

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from syncserver.tokenserver.jws import BadSignature, BadToken, decode_segment, verified_claims
from tests.fxa_server import OMIT, FakeAccountsServer, SigningKey, b64url

NOW = int(time.time())
KEY = SigningKey.generate()
OTHER_KEY = SigningKey.generate()
PUBLIC = RSAAlgorithm.from_jwk(KEY.jwk())


def mint(claims=None, header=None, key=KEY, alg="RS256"):
    full_header = {"alg": "RS256", "typ": "at+JWT", "kid": key.kid, **(header or {})}
    full_claims = {"sub": "a" * 32, "exp": NOW + 3600, "scope": "x", **(claims or {})}
    for target in (full_header, full_claims):
        for name in [name for name, value in target.items() if value is OMIT]:
            del target[name]
    return FakeAccountsServer.sign(full_header, full_claims, key=key, alg=alg)


def pyjwt_accepts(token, issuer=None):
    try:
        jwt.decode(token, PUBLIC, algorithms=["RS256"], leeway=5, issuer=issuer,
                   options={"require": ["exp", "sub"], "verify_aud": False,
                            "verify_iat": False, "verify_iss": bool(issuer)})
        return True
    except jwt.PyJWTError:
        return False


def ours_accepts(token, issuer=None):
    try:
        verified_claims(token, PUBLIC, leeway=5, issuer=issuer, now=time.time())
        return True
    except BadToken:
        return False


def flip_last_character(token):
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


CASES = {
    "valid": mint(),
    "expired beyond the leeway": mint({"exp": NOW - 60}),
    "expired within the leeway": mint({"exp": NOW - 2}),
    "no exp": mint({"exp": OMIT}),
    "no sub": mint({"sub": OMIT}),
    "nbf in the future": mint({"nbf": NOW + 3600}),
    "nbf in the past": mint({"nbf": NOW - 3600}),
    "iat in the future": mint({"iat": NOW + 3600}),
    "crit header": mint(header={"crit": ["exp"]}),
    "signed by another key": mint(key=OTHER_KEY),
    "HS256 with the public key": mint(header={"alg": "HS256"}, alg="HS256"),
    "alg none": mint(header={"alg": "none"}, alg="none"),
    "a changed signature": flip_last_character(mint()),
    "two segments": mint().rsplit(".", 1)[0],
    "four segments": mint() + ".e30",
    "not base64url": mint().replace(".", ".!", 1),
    "claims not an object": FakeAccountsServer.sign({"alg": "RS256", "typ": "at+JWT"}, [1, 2],
                                                     key=KEY),
}


@pytest.mark.parametrize("token", CASES.values(), ids=CASES.keys())
def test_accepts_exactly_what_pyjwt_accepted(token):
    assert ours_accepts(token) == pyjwt_accepts(token)


def test_stricter_than_pyjwt_on_exp_as_a_string():
    """PyJWT took ``int("9999999999")``; the verifier refused it right after. Now at once."""
    token = mint({"exp": "9999999999"})
    assert pyjwt_accepts(token) and not ours_accepts(token)


def test_padding_is_tolerated_as_pyjwt_did():
    """On the signature segment (padding the others changes what was signed)."""
    token = mint()
    padded = token + "=" * (-len(token.rsplit(".", 1)[1]) % 4)
    assert padded != token
    assert ours_accepts(padded) and pyjwt_accepts(padded)
    assert not ours_accepts(token + "===") and not pyjwt_accepts(token + "===")


def test_the_issuer_when_one_is_configured():
    issuer = "https://accounts.example.com"
    for token in (mint({"iss": issuer}), mint({"iss": "https://evil.example"}), mint()):
        assert ours_accepts(token, issuer) == pyjwt_accepts(token, issuer)
    assert ours_accepts(mint({"iss": issuer}), issuer)


def test_another_keys_signature_is_told_apart():
    """The verifier tries the next key on BadSignature, and stops on any other fault."""
    with pytest.raises(BadSignature):
        verified_claims(mint(key=OTHER_KEY), PUBLIC, leeway=5)
    with pytest.raises(BadToken) as refused:
        verified_claims(mint({"exp": NOW - 600}), PUBLIC, leeway=5)
    assert not isinstance(refused.value, BadSignature)
    assert str(refused.value) == "expired"


def test_one_spelling_per_segment():
    """Base64url with non-zero trailing bits decodes to the same bytes: refused."""
    assert decode_segment(b64url(b"ab").encode()) == b"ab"  # "YWI"
    with pytest.raises(BadToken):
        decode_segment(b"YWJ")  # same bytes, other trailing bits
    with pytest.raises(BadToken):
        decode_segment(b"Y")  # no byte ends there
    with pytest.raises(BadToken):
        decode_segment(b"YW+")  # the standard alphabet


def test_the_claims_come_back():
    claims = verified_claims(mint({"fxa-generation": 7}), PUBLIC, leeway=5)
    assert claims["fxa-generation"] == 7 and claims["sub"] == "a" * 32
