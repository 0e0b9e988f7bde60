"""Sync 1.5 tokens: the reference's vectors, rotation, and every way a token id can be bad."""

import base64
import hashlib
import hmac
import json

import pytest
import tokenlib
from hypothesis import given
from hypothesis import strategies as st
from tokenlib.utils import HKDF

from syncserver.protocol import tokens
from syncserver.protocol.tokens import (
    InvalidToken,
    Token,
    TokenCache,
    canonical_token_id,
    hash_device_id,
    hash_fxa_uid,
    make_token,
    parse_token,
)

# Reference §1.8, test vector.
SECRET = "s3cr3t"
PAYLOAD = {"uid": 42, "node": "https://sync.example.com", "expires": 1700003600, "salt": "a1b2c3"}
PAYLOAD_BYTES = (b'{"uid": 42, "node": "https://sync.example.com", '
                 b'"expires": 1700003600, "salt": "a1b2c3"}')
SIG_KEY_HEX = "899f3a7a436f498e08b7aa82b13a05da1d72b64cadd20b73845ccf1e94c9d729"
TOKEN_ID = ("eyJ1aWQiOiA0MiwgIm5vZGUiOiAiaHR0cHM6Ly9zeW5jLmV4YW1wbGUuY29tIiwgImV4cGlyZXMiOiAx"
            "NzAwMDAzNjAwLCAic2FsdCI6ICJhMWIyYzMifaVutzcyk9c6XYVwM3lZvh_7MAEkgtutegoB718_2V0E")
DERIVED_KEY = "zgzca-tZeOQ1S6QhMigJYRZ_X9TfSyVWVK3QO_pl3ws="
METRICS_SECRET = "metricsecret"
FXA_UID = "0123456789abcdef0123456789abcdef"
HASHED_FXA_UID = "1155818a80d4180b6e0fa91ac6c9ceaf"
HASHED_DEVICE_ID = "9d91b363a9973e3d27151bbe9292606e"


def signed_raw(payload_bytes, secret=SECRET):
    """A token id over arbitrary bytes, correctly signed: what only a secret holder can make."""
    sig_key = HKDF(secret.encode(), salt=None, info=b"services.mozilla.com/tokenlib/v1/signing",
                   size=32)
    signature = hmac.new(sig_key, payload_bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(payload_bytes + signature).decode("ascii")


def signed_payload(**fields):
    return signed_raw(json.dumps(fields).encode())


# -- the reference's vectors ----------------------------------------------------------

def test_signing_key_vector():
    sig_key = HKDF(SECRET.encode("utf-8"), salt=None,
                   info=b"services.mozilla.com/tokenlib/v1/signing", size=32)
    assert sig_key.hex() == SIG_KEY_HEX


def test_make_token_vector():
    assert make_token(PAYLOAD, SECRET) == (TOKEN_ID, DERIVED_KEY)


def test_token_id_is_payload_plus_hmac_of_it():
    raw = base64.urlsafe_b64decode(TOKEN_ID)
    assert raw[:-32] == PAYLOAD_BYTES
    assert raw[-32:] == hmac.new(bytes.fromhex(SIG_KEY_HEX), PAYLOAD_BYTES, hashlib.sha256).digest()


def test_parse_token_vector():
    token = parse_token(TOKEN_ID, [SECRET])
    assert token == Token(uid=42, node="https://sync.example.com", expires=1700003600,
                          salt="a1b2c3", token_id=TOKEN_ID, derived_key=DERIVED_KEY)


def test_metrics_hash_vectors():
    assert hash_fxa_uid(METRICS_SECRET, FXA_UID) == HASHED_FXA_UID
    assert hash_device_id(METRICS_SECRET, HASHED_FXA_UID) == HASHED_DEVICE_ID


def test_agrees_with_tokenlib_itself():
    token_id, key = make_token({"uid": 7, "node": "https://a.example"}, "another secret")
    manager = tokenlib.TokenManager(secret="another secret")
    assert manager.parse_token(token_id)["uid"] == 7
    assert manager.get_derived_secret(token_id) == key
    assert parse_token(token_id, ["another secret"]).derived_key == key


# -- minting ----------------------------------------------------------------------

def test_make_token_adds_salt_and_integer_expiry():
    payload = {"uid": 1, "node": "https://sync.example.com"}
    token_id, key = make_token(payload, SECRET, duration=600, now=1_700_000_000.7)
    assert payload == {"uid": 1, "node": "https://sync.example.com"}  # not modified
    token = parse_token(token_id, [SECRET])
    assert token.expires == 1_700_000_600 and type(token.expires) is int
    assert len(token.salt) == 6 and int(token.salt, 16) >= 0
    assert token.derived_key == key and len(key) == 44


def test_salts_differ_so_keys_differ():
    first = make_token({"uid": 1, "node": "n"}, SECRET, now=0)
    second = make_token({"uid": 1, "node": "n"}, SECRET, now=0)
    assert first[0] != second[0] and first[1] != second[1]


def test_fxa_fields_round_trip():
    fields = {"fxa_uid": FXA_UID, "fxa_kid": "0000000001234-u7s",
              "hashed_fxa_uid": HASHED_FXA_UID, "hashed_device_id": HASHED_DEVICE_ID}
    token_id, _ = make_token({"uid": 3, "node": "https://n.example", **fields}, SECRET)
    token = parse_token(token_id, [SECRET])
    assert (token.fxa_uid, token.fxa_kid, token.hashed_fxa_uid, token.hashed_device_id) == (
        FXA_UID, "0000000001234-u7s", HASHED_FXA_UID, HASHED_DEVICE_ID)


def test_expired_tokens_still_parse():
    token_id, _ = make_token({"uid": 1, "node": "n", "expires": 10}, SECRET)
    assert parse_token(token_id, [SECRET]).expires == 10


def test_repr_shows_neither_key_nor_id():
    token = parse_token(TOKEN_ID, [SECRET])
    assert DERIVED_KEY not in repr(token) and TOKEN_ID[:20] not in repr(token)
    assert "uid=42" in repr(token)


# -- padding and canonical ids ----------------------------------------------------------

def padded_token():
    """A token whose id ends in "=" (its length is not a multiple of 3 bytes)."""
    for node in ("n", "nn", "nnn"):
        token_id, key = make_token({"uid": 5, "node": node, "salt": "abcdef", "expires": 1},
                                   SECRET)
        if token_id.endswith("="):
            return token_id, key
    raise AssertionError("unreachable: one of three lengths needs padding")


def test_missing_padding_is_accepted_and_derives_the_same_key():
    token_id, key = padded_token()
    token = parse_token(token_id.rstrip("="), [SECRET])
    assert token.token_id == token_id and token.derived_key == key


def test_canonical_id_ignores_unused_trailing_bits():
    token_id, key = padded_token()
    unpadded = token_id.rstrip("=")
    assert len(unpadded) % 4 in (2, 3)
    # The last character carries bits that decoding discards: flipping one gives the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variant = unpadded[:-1] + alphabet[alphabet.index(unpadded[-1]) ^ 1]
    assert canonical_token_id(variant) == token_id
    assert parse_token(variant, [SECRET]).derived_key == key


# -- rotation -----------------------------------------------------------------------

def test_every_secret_in_the_list_verifies():
    old_id, old_key = make_token({"uid": 9, "node": "n"}, "old secret")
    new_id, new_key = make_token({"uid": 9, "node": "n"}, "new secret")
    secrets = ["new secret", "old secret"]
    assert parse_token(old_id, secrets).derived_key == old_key
    assert parse_token(new_id, secrets).derived_key == new_key


def test_a_secret_not_in_the_list_is_refused_without_leaking():
    with pytest.raises(InvalidToken) as caught:
        parse_token(TOKEN_ID, ["new secret", "other"])
    assert "signature" in caught.value.reason
    for secret_thing in ("new secret", "other", SECRET, TOKEN_ID[:16], DERIVED_KEY):
        assert secret_thing not in str(caught.value)


def test_no_secret_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_token(TOKEN_ID, [])


def test_tampered_payload_is_refused():
    raw = bytearray(base64.urlsafe_b64decode(TOKEN_ID))
    raw[10] ^= 1
    with pytest.raises(InvalidToken, match="signature"):
        parse_token(base64.urlsafe_b64encode(bytes(raw)).decode(), [SECRET])


# -- bad encodings and payloads -------------------------------------------------------

@pytest.mark.parametrize("token_id", [
    "", "=", "====", "a", "abcde", "!!!!", "abc def", "é" * 40, TOKEN_ID + "===",
    TOKEN_ID.replace("_", "/"), TOKEN_ID[:-1] + "+", " " + TOKEN_ID, TOKEN_ID + "\n",
    "A" * 5000, base64.urlsafe_b64encode(b"x" * 32).decode(), None, 42,
])
def test_bad_encodings(token_id):
    with pytest.raises(InvalidToken):
        parse_token(token_id, [SECRET])


@pytest.mark.parametrize("payload_bytes,reason", [
    (b"not json", "JSON"),
    (b"\xff\xfe{}", "JSON"),
    (b"[1, 2]", "expiry"),
    (b'"text"', "expiry"),
    (b"42", "expiry"),
    (b'{"uid": 1, "node": "n", "salt": "ab"}', "expiry"),
    (b'{"uid": 1, "node": "n", "salt": "ab", "expires": "soon"}', "expiry"),
    (b'{"uid": 1, "node": "n", "salt": "ab", "expires": true}', "expiry"),
    (b'{"uid": 1, "node": "n", "salt": "ab", "expires": NaN}', "expiry"),
    (b'{"uid": -1, "node": "n", "salt": "ab", "expires": 1}', "uid"),
    (b'{"uid": "42", "node": "n", "salt": "ab", "expires": 1}', "uid"),
    (b'{"uid": true, "node": "n", "salt": "ab", "expires": 1}', "uid"),
    (b'{"uid": 4.0, "node": "n", "salt": "ab", "expires": 1}', "uid"),
    (b'{"node": "n", "salt": "ab", "expires": 1}', "uid"),
    (b'{"uid": 1, "node": 42, "salt": "ab", "expires": 1}', "node"),
    (b'{"uid": 1, "salt": "ab", "expires": 1}', "node"),
    (b'{"uid": 1, "node": "n", "expires": 1}', "salt"),
    (b'{"uid": 1, "node": "n", "salt": "\\u00e9", "expires": 1}', "salt"),
    (b'{"uid": 1, "node": "n", "salt": "ab", "expires": 1, "fxa_uid": "a b"}', "fxa_uid"),
    (b'{"uid": 1, "node": "n", "salt": "ab", "expires": 1, "fxa_kid": 5}', "fxa_kid"),
    (b'{"uid": 1, "node": "n", "salt": "ab", "expires": 1, "hashed_fxa_uid": ""}',
     "hashed_fxa_uid"),
])
def test_signed_but_bad_payloads(payload_bytes, reason):
    with pytest.raises(InvalidToken) as caught:
        parse_token(signed_raw(payload_bytes), [SECRET])
    assert reason in caught.value.reason


def test_signed_good_payload_parses():
    token = parse_token(signed_payload(uid=0, node="n", salt="ab", expires=1.5), [SECRET])
    assert (token.uid, token.node, token.expires) == (0, "n", 1.5)


@given(st.one_of(st.text(max_size=300),
                 st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=",
                         max_size=300),
                 st.binary(max_size=200).map(lambda raw: base64.urlsafe_b64encode(raw).decode())))
def test_arbitrary_token_ids_raise_only_invalid_token(token_id):
    try:
        parse_token(token_id, [SECRET, "second"])
    except InvalidToken as error:
        assert SECRET not in error.reason and "second" not in error.reason


# -- the verified-token cache of storage nodes ----------------------------------------


def counting_parse(monkeypatch):
    """Count the real verifications a TokenCache makes."""
    calls = []
    real = tokens.parse_token

    def parse(token_id, secrets):
        calls.append(token_id)
        return real(token_id, secrets)

    monkeypatch.setattr(tokens, "parse_token", parse)
    return calls


def test_token_cache_verifies_a_token_once_and_answers_what_parse_token_does(monkeypatch):
    calls = counting_parse(monkeypatch)
    cache = TokenCache(["old", SECRET])
    first = cache.parse(TOKEN_ID)
    assert first == parse_token(TOKEN_ID, [SECRET])
    assert first.derived_key == DERIVED_KEY
    assert cache.parse(TOKEN_ID) is first
    assert len(calls) == 1 and len(cache) == 1


def test_token_cache_keeps_no_refused_id_and_refuses_it_every_time(monkeypatch):
    calls = counting_parse(monkeypatch)
    cache = TokenCache([SECRET])
    tampered = TOKEN_ID[:-6] + ("A" if TOKEN_ID[-6] != "A" else "B") + TOKEN_ID[-5:]
    other_secret, _key = make_token(PAYLOAD, "another secret")
    for bad in (tampered, other_secret, "", "!" * 10, None):
        for _ in range(2):
            with pytest.raises(InvalidToken):
                cache.parse(bad)
    assert len(cache) == 0
    assert len(calls) == 10


def test_token_cache_hit_needs_the_whole_id():
    cache = TokenCache([SECRET])
    cache.parse(TOKEN_ID)
    # The same token without its padding verifies on its own, to the same token.
    unpadded = TOKEN_ID.rstrip("=") if TOKEN_ID.endswith("=") else TOKEN_ID
    assert cache.parse(unpadded).token_id == canonical_token_id(TOKEN_ID)
    with pytest.raises(InvalidToken):
        cache.parse(TOKEN_ID[:-1] + ("E" if TOKEN_ID[-1] != "E" else "F"))


def test_token_cache_is_bounded_oldest_first(monkeypatch):
    calls = counting_parse(monkeypatch)
    cache = TokenCache([SECRET], max_entries=3)
    ids = [make_token({"uid": uid, "node": "https://n"}, SECRET)[0] for uid in range(5)]
    assert [cache.parse(token_id).uid for token_id in ids] == list(range(5))
    assert len(cache) == 3
    del calls[:]
    assert cache.parse(ids[4]).uid == 4 and calls == []   # kept
    assert cache.parse(ids[0]).uid == 0 and calls == [ids[0]]  # dropped, verified again
    assert len(cache) == 3
    with pytest.raises(ValueError):
        TokenCache([SECRET], max_entries=0)
