"""The fake accounts server itself: it must speak FxA's protocol, or the verifier's tests
prove nothing. Checked over HTTP with the standard library and PyJWT, not the verifier.
"""

import base64
import json
import re
import time
import urllib.error
import urllib.request

import jwt
import pytest

from tests.fxa_server import MOZILLA_TOKENSERVER, OLDSYNC_SCOPE, OMIT


def get(url):
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status, json.loads(reply.read())


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def segment(token, index):
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_jwks_has_fxas_fields(fxa):
    status, document = get(fxa.url + "/jwks")
    assert status == 200
    [key] = document["keys"]
    assert set(key) == {"kty", "alg", "kid", "use", "fxa-createdAt", "n", "e"}
    assert (key["kty"], key["alg"], key["use"], key["e"]) == ("RSA", "RS256", "sig", "AQAB")
    assert isinstance(key["fxa-createdAt"], int)
    assert "=" not in key["n"]
    assert fxa.jwks_fetches == 1


def test_minted_tokens_look_like_fxas_and_pyjwt_accepts_them(fxa):
    token = fxa.mint()
    assert segment(token, 0) == {"alg": "RS256", "typ": "at+JWT", "kid": fxa.active_key.kid}
    claims = segment(token, 1)
    assert re.fullmatch(r"[0-9a-f]{32}", claims["sub"])
    assert OLDSYNC_SCOPE in claims["scope"].split(" ")
    assert claims["aud"] == MOZILLA_TOKENSERVER
    assert claims["exp"] > time.time() and isinstance(claims["fxa-generation"], int)
    _, document = get(fxa.url + "/jwks")
    public_key = jwt.PyJWK(document["keys"][0]).key
    decoded = jwt.decode(token, public_key, algorithms=["RS256"],
                         audience=MOZILLA_TOKENSERVER)
    assert decoded == claims


def test_overrides_and_omissions(fxa):
    token = fxa.mint({"scope": "profile", "aud": OMIT}, header={"typ": OMIT, "x": 1})
    assert segment(token, 0) == {"alg": "RS256", "kid": fxa.active_key.kid, "x": 1}
    assert segment(token, 1)["scope"] == "profile" and "aud" not in segment(token, 1)
    assert fxa.mint(alg="none").endswith(".")


def test_verify_answers_like_fxa(fxa):
    status, answer = post(fxa.url + "/verify", {"token": fxa.mint({"sub": "a" * 32,
                                                                     "fxa-generation": 7})})
    assert status == 200
    assert answer == {"user": "a" * 32, "client_id": "5882386c6d801776",
                      "scope": ["profile", OLDSYNC_SCOPE], "generation": 7}
    opaque = fxa.mint_opaque(user="b" * 32)
    assert post(fxa.url + "/verify", {"token": opaque})[1]["user"] == "b" * 32
    assert post(fxa.url + "/verify", {"token": "0" * 64}) == (400, {
        "code": 400, "errno": 108, "error": "Bad Request", "message": "Invalid token"})
    assert post(fxa.url + "/verify", {"token": "x"})[1]["errno"] == 109
    assert post(fxa.url + "/verify", {"token": fxa.mint({"exp": 1})})[1]["errno"] == 115
    retired = fxa.mint()
    fxa.add_key()
    fxa.retire_key(fxa.keys[0])
    assert post(fxa.url + "/verify", {"token": retired})[1]["errno"] == 108
    assert fxa.verify_requests == 6


def test_faults(fxa):
    fxa.status = 500
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(fxa.url + "/jwks")
    assert caught.value.code == 500
    fxa.status = None
    fxa.jwks_body = b"garbage"
    with urllib.request.urlopen(fxa.url + "/jwks", timeout=5) as reply:
        assert reply.read() == b"garbage"
    port = fxa.port
    fxa.stop()
    with pytest.raises(urllib.error.URLError):
        get(fxa.url + "/jwks")
    fxa.start()
    assert fxa.port == port
    fxa.jwks_body = None
    assert get(fxa.url + "/jwks")[0] == 200
