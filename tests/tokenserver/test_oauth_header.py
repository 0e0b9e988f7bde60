"""The JOSE header is read once: only its own segment, before PyJWT verifies the whole token.

``jwt.get_unverified_header`` parsed the whole token a first time (every
character checked in Python), then ``jwt.decode`` parsed it again: a tenth of
a token request. The verifier now decodes only the header segment to find
the key; PyJWT still parses and checks everything. These tests pin both
halves: no second parse, and garbage still refused before any key is fetched.
"""

import base64
import json

import jwt
import pytest

from syncserver.tokenserver.oauth import InvalidAccessToken


def segment(value):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def test_a_good_token_is_parsed_by_pyjwt_once(fxa, verifier, monkeypatch):
    calls = []
    monkeypatch.setattr(jwt, "get_unverified_header",
                        lambda *args, **kwargs: calls.append(args) or {})
    token = fxa.mint({"sub": "0123456789abcdef0123456789abcdef"})
    assert verifier.verify(token).fxa_uid == "0123456789abcdef0123456789abcdef"
    assert calls == []


@pytest.mark.parametrize("header", [
    [1, 2], "a string", None, {"alg": "RS256", "typ": "at+jwt", "kid": 7},
    {"alg": "RS256", "typ": "at+jwt", "kid": None}, b"\xff\xfe not json", b"[" * 1500,
])
def test_bad_headers_are_refused_without_a_request(fxa, verifier, header):
    _, payload, signature = fxa.mint().split(".")
    with pytest.raises(InvalidAccessToken, match="not a JWS"):
        verifier.verify(f"{segment(header)}.{payload}.{signature}")
    assert (fxa.jwks_fetches, fxa.verify_requests) == (0, 0)


def impossible_length(p):
    """The segment made one character longer than a multiple of four (never base64)."""
    return p[:len(p) - len(p) % 4] + "x"


@pytest.mark.parametrize("damage", [
    lambda h, p, s: f"{h}.{p[:-1]}!.{s}",               # a character outside base64url
    lambda h, p, s: f"{h}.{p}.{s}.{s}",                  # four segments
    lambda h, p, s: f"{h}.{impossible_length(p)}.{s}",  # a length base64 never has
    lambda h, p, s: f"{h}..{s}",                         # no payload
    lambda h, p, s: f"{h}.{p}.{s}===",                   # too much padding
])
def test_garbage_after_a_good_header_is_refused_before_any_key_is_fetched(fxa, verifier,
                                                                          damage):
    token = damage(*fxa.mint().split("."))
    with pytest.raises(InvalidAccessToken, match="not a JWS"):
        verifier.verify(token)
    assert (fxa.jwks_fetches, fxa.verify_requests) == (0, 0)


def test_a_good_header_does_not_save_a_forged_payload(fxa, verifier):
    header, _payload, signature = fxa.mint().split(".")
    forged = segment({"sub": "f" * 32, "scope": "https://identity.mozilla.com/apps/oldsync",
                      "exp": 9_999_999_999})
    with pytest.raises(InvalidAccessToken):
        verifier.verify(f"{header}.{forged}.{signature}")
