"""Password hashing: argon2id for new hashes, Mozilla's legacy formats verified.

The legacy hashes are built here independently, straight from the formulas in
the reference (§4.3), with hashlib.
"""

import base64
import hashlib
import hmac
import secrets
import string

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncserver.auth import passwords
from syncserver.auth.passwords import (
    DEFAULT_PARAMETERS,
    PasswordHasher,
    hash_password,
    needs_rehash,
    verify_password,
)
from tests.support import cheap_password_hasher

CHEAP = cheap_password_hasher()

SALT_ALPHABET = string.ascii_letters + string.digits


def make_salt():
    return "".join(secrets.choice(SALT_ALPHABET) for _ in range(8)).encode("ascii")


def legacy_ssha(password, salt=None, prefix="{SSHA}"):
    salt = salt or make_salt()
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return prefix + base64.b64encode(digest + salt).decode("ascii")


def legacy_ssha256(password, salt=None):
    salt = salt or make_salt()
    digest = hashlib.sha256(password.encode("utf-8") + salt).digest()
    return "{SSHA-256}" + base64.b64encode(digest + salt).decode("ascii")


def legacy_sscrypt(password, salt=None):
    salt = salt or make_salt()
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=16384, r=8, p=1, dklen=64)
    return "{SSCRYPT}" + base64.b64encode(digest + salt).decode("ascii")


LEGACY_BUILDERS = [legacy_ssha, legacy_ssha256, legacy_sscrypt]

PASSWORDS = [
    "password",
    "correct horse battery staple",
    "pass:word",
    "αβγδεζηθ",
    "☃snowman☃",
    "\tta b\nnl=!@",
    "Françios",
    "日本語のパスワード",
    "emoji 🔑 key",
]


# --- argon2 ---------------------------------------------------------------

def test_new_hashes_are_argon2id_with_the_default_parameters():
    stored = hash_password("s3cret password")
    assert stored.startswith("$argon2id$v=19$")
    assert f"m={DEFAULT_PARAMETERS.memory_cost},t={DEFAULT_PARAMETERS.time_cost}," in stored
    assert verify_password("s3cret password", stored)
    assert not verify_password("s3cret passwore", stored)
    assert not needs_rehash(stored)


def test_default_parameters_are_memory_hard():
    assert DEFAULT_PARAMETERS.type is argon2.Type.ID
    assert DEFAULT_PARAMETERS.memory_cost >= 19 * 1024  # KiB
    assert DEFAULT_PARAMETERS.time_cost >= 2
    assert passwords.DEFAULT_HASHER.parameters == DEFAULT_PARAMETERS


def test_hashes_are_salted():
    assert hash_password("same password") != hash_password("same password")


def test_other_parameters_need_a_rehash():
    cheap = CHEAP.hash("password")
    assert verify_password("password", cheap)  # the default hasher still verifies it
    assert needs_rehash(cheap)
    assert not needs_rehash(cheap, CHEAP)
    assert CHEAP.needs_rehash(hash_password("password"))


def test_argon2i_and_argon2d_hashes_verify_and_need_a_rehash():
    for kind in (argon2.Type.I, argon2.Type.D):
        other = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=kind)
        stored = other.hash("password")
        assert verify_password("password", stored, CHEAP)
        assert not verify_password("passwore", stored, CHEAP)
        assert needs_rehash(stored, CHEAP)


@pytest.mark.parametrize("password", PASSWORDS)
def test_argon2_round_trip(password):
    stored = CHEAP.hash(password)
    assert CHEAP.verify(password, stored)
    assert not CHEAP.verify(password + "x", stored)
    assert not CHEAP.verify(password[:-1], stored)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40))
def test_argon2_round_trip_any_text(password):
    stored = CHEAP.hash(password)
    assert CHEAP.verify(password, stored)
    assert not CHEAP.verify(password + "\x00", stored)


def test_unencodable_password_cannot_be_hashed_and_never_verifies():
    with pytest.raises(ValueError):
        CHEAP.hash("bad \udc80 surrogate")
    assert not CHEAP.verify("bad \udc80 surrogate", CHEAP.hash("bad  surrogate"))


# --- legacy formats -------------------------------------------------------

@pytest.mark.parametrize("builder", LEGACY_BUILDERS)
@pytest.mark.parametrize("password", ["password", "αβγ☃ non-ASCII ☃", "a:b!c@d=e f\tg\nh"])
def test_legacy_hashes_verify(builder, password):
    stored = builder(password)
    assert verify_password(password, stored)
    assert not verify_password(password + "!", stored)
    assert not verify_password(password.upper() if password != password.upper() else "x", stored)
    assert needs_rehash(stored)


def test_legacy_known_values():
    salt = b"abcdEFGH"
    assert verify_password("secret", legacy_ssha("secret", salt))
    assert verify_password("secret", legacy_ssha256("secret", salt))
    assert verify_password("secret", legacy_sscrypt("secret", salt))
    # The non-ASCII password is hashed as UTF-8, not Latin-1.
    latin1 = "{SSHA-256}" + base64.b64encode(
        hashlib.sha256("é".encode("latin-1") + salt).digest() + salt).decode()
    assert not verify_password("é", latin1)
    assert verify_password("é", legacy_ssha256("é", salt))


def test_unknown_or_missing_prefix_is_ssha():
    salt = make_salt()
    body = legacy_ssha("secret", salt)[len("{SSHA}"):]
    assert verify_password("secret", body)
    assert verify_password("secret", "{CRYPT}" + body)
    assert verify_password("secret", "{ssha}" + body)  # LDAP spells it either way
    assert not verify_password("wrong", body)
    # A SHA-256 body under an unknown prefix is checked as SHA-1, so it fails.
    assert not verify_password("secret", "{FOO}" + legacy_ssha256("secret", salt)[10:])


def test_base64_with_trailing_newline_still_verifies():
    stored = legacy_ssha256("secret") + "\n"
    assert verify_password("secret", stored)


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
       st.binary(min_size=8, max_size=8))
def test_ssha_formats_any_password_any_salt(password, salt):
    assert verify_password(password, legacy_ssha(password, salt))
    assert verify_password(password, legacy_ssha256(password, salt))
    assert not verify_password(password + "a", legacy_ssha256(password, salt))


def test_legacy_comparison_is_constant_time(monkeypatch):
    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(passwords.hmac, "compare_digest", spy)
    for builder in (legacy_ssha, legacy_ssha256):
        stored = builder("secret")
        assert verify_password("secret", stored)
        assert not verify_password("other", stored)
    assert len(calls) == 4


# --- malformed values -------------------------------------------------------

MALFORMED = [
    None,
    "",
    b"{SSHA}bytes-not-str",
    42,
    "{SSHA}",
    "{SSHA}!!!not base64!!!",
    "{SSHA}" + base64.b64encode(b"short").decode(),
    "{SSHA-256}" + base64.b64encode(b"x" * 20 + b"12345678").decode(),  # SHA-1 length
    "{SSCRYPT}" + base64.b64encode(b"x" * 32).decode(),
    "{SSCRYPT}abc",  # bad padding
    "{unterminated" + base64.b64encode(b"x" * 28).decode(),
    "$argon2id$",
    "$argon2id$v=19$m=8,t=1,p=1$garbage",
    "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
    "$argon2xx$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
    "ünïcödé",
    "{SSHA}ünïcödé",
]


@pytest.mark.parametrize("stored", MALFORMED)
def test_malformed_stored_values_never_verify_nor_raise(stored):
    assert verify_password("password", stored) is False
    assert verify_password("", stored) is False
    assert CHEAP.verify("password", stored) is False
    assert needs_rehash(stored) is True


def test_non_string_password_never_verifies():
    stored = CHEAP.hash("password")
    assert CHEAP.verify(None, stored) is False
    assert CHEAP.verify(12345678, stored) is False


def test_concurrency_bound_does_not_deadlock():
    import concurrent.futures

    hasher = PasswordHasher(CHEAP.parameters, max_concurrent=1)
    stored = legacy_sscrypt("pw")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: hasher.verify("pw", stored) and hasher.verify("pw", hasher.hash("pw")),
            range(16)))
    assert all(results)
