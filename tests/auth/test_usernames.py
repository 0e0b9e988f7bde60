"""Usernames (reference §3.1), e-mail validation (§3.3 step 3), password strength."""

import base64
import hashlib
import re
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.auth.usernames import (
    USERNAME_PATTERN,
    extract_username,
    is_valid_email,
    is_valid_username,
    is_weak_password,
)


def sync_hash(ascii_address):
    """The Sync username of an ASCII address, from the formula alone."""
    digest = hashlib.sha1(ascii_address.lower().encode("ascii")).digest()
    return base64.b32encode(digest).decode("ascii").lower()


# --- usernames -----------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "a", "A", "0", "john.doe", "under_score", "da-sh", "x" * 32,
    "u2wqblarhim5su7pxemcbwdyryrghmuk", "...", "-_.",
])
def test_valid_usernames(name):
    assert is_valid_username(name)
    assert re.fullmatch(USERNAME_PATTERN, name)


@pytest.mark.parametrize("name", [
    "", "x" * 33, "with space", "slash/", "at@", "plus+", "é", "tab\t", "nl\n",
    "name\n", "ｆｕｌｌ", "%41", None, 12, b"bytes",
])
def test_invalid_usernames(name):
    assert not is_valid_username(name)


# --- extract_username ----------------------------------------------------------

def test_reference_vectors():
    assert extract_username("test@test.com") == "u2wqblarhim5su7pxemcbwdyryrghmuk"
    assert extract_username("Fran%c3%a7ios@valid.test") == "ym3nccfhvptfrhn7nkhhyvzgf2yl7r5y"


def test_idna_local_part_is_encoded_separately():
    # The reference says the local part IDNA-encodes to xn--franios-xxa.
    assert extract_username("Françios@valid.test") == sync_hash("xn--franios-xxa@valid.test")
    assert extract_username("user@bücher.example") == sync_hash("user@xn--bcher-kva.example")


def test_bytes_input():
    assert extract_username(b"test@test.com") == "u2wqblarhim5su7pxemcbwdyryrghmuk"
    assert extract_username(b"Fran%c3%a7ios@valid.test") == "ym3nccfhvptfrhn7nkhhyvzgf2yl7r5y"
    assert extract_username("Françios@valid.test".encode()) == "ym3nccfhvptfrhn7nkhhyvzgf2yl7r5y"
    assert extract_username(b"plainName") == "plainName"


def test_hash_is_case_insensitive_and_32_chars():
    result = extract_username("Test@TEST.Com")
    assert result == "u2wqblarhim5su7pxemcbwdyryrghmuk"
    assert re.fullmatch(r"[a-z2-7]{32}", result)


def test_plain_usernames_are_returned_unchanged():
    assert extract_username("MixedCase.Name-1_x") == "MixedCase.Name-1_x"
    hashed = "u2wqblarhim5su7pxemcbwdyryrghmuk"
    assert extract_username(hashed) == hashed


@pytest.mark.parametrize("name", ["", "with space", "x" * 33, "é", "a/b", "a%",
                                  "a+b", b"\xff"])
def test_plain_invalid_names_raise_value_error(name):
    with pytest.raises(ValueError):
        extract_username(name)


def test_split_at_the_first_at_sign_after_percent_decoding():
    assert extract_username("a@b@c.com") == sync_hash("a@b@c.com")
    assert extract_username("a%40b@c.com") == sync_hash("a@b@c.com")
    assert extract_username("tarek%2Bsync@mozilla.com") == sync_hash("tarek+sync@mozilla.com")


@pytest.mark.parametrize("name", [
    "a..b@x.com",          # empty label in the local part
    "a@x..com",            # empty label in the domain
    "a" * 64 + "@x.com",   # label longer than 63
    "a@" + "b" * 64 + ".com",
    "%ff@x.com",           # invalid UTF-8
    "caf%e9@x.com",        # Latin-1, not UTF-8
])
def test_unicode_errors(name):
    with pytest.raises(UnicodeError):
        extract_username(name)


@given(st.from_regex(r"[a-zA-Z0-9_+-]{1,20}@[a-zA-Z0-9-]{1,20}\.[a-zA-Z]{2,6}", fullmatch=True))
def test_ascii_addresses_match_the_formula(address):
    expected = sync_hash(address)
    assert extract_username(address) == expected
    assert extract_username(address.upper()) == expected
    assert extract_username(urllib.parse.quote(address, safe="@")) == expected


# --- e-mail addresses ----------------------------------------------------------

@pytest.mark.parametrize("address", [
    "tarek+sync@mozilla.com",
    "tarek@127.0.0.1",
    "a@b.co",
    "first.last@sub.example.org",
    "o'brien@example.ie",
    '"quoted name"@example.com',
    "x@[192.168.1.1]",
    "Françios@valid.test",
    "user@bücher.example",
    "x@example.com.",
])
def test_valid_emails(address):
    assert is_valid_email(address)


@pytest.mark.parametrize("address", [
    "tarek@moz",
    "tarek@192.12.32334.3",
    "tarek@256.1.1.1",
    "",
    "no-at-sign",
    "@example.com",
    "a@",
    "a..b@example.com",
    ".a@example.com",
    "a@-bad.com",
    "a@bad-.com",
    "a b@example.com",
    "a@example.com\n",
    "a@b.c",
    "a@example.c0m",
    "a@@example.com",
    None,
])
def test_invalid_emails(address):
    assert not is_valid_email(address)


def test_email_length_limit():
    local = "a" * 60
    domain = ".".join(["b" * 60] * 3) + ".com"  # 187 characters
    address = local + "@" + domain  # 248
    assert len(address) <= 254 and is_valid_email(address)
    too_long = "a" * 60 + "@" + ".".join(["b" * 60] * 3) + "." + "c" * 10 + ".com"
    assert len(too_long) > 254
    assert not is_valid_email(too_long)


# --- password strength ---------------------------------------------------------

@pytest.mark.parametrize("username, password, weak", [
    ("alice", "short", True),
    ("alice", "1234567", True),
    ("alice", "12345678", False),
    ("alice", "ααα", True),        # 6 bytes
    ("alice", "αααα", False),      # 8 bytes in UTF-8, 4 characters
    ("longusername", "LongUserName", True),
    ("longusername", "  longusername ", True),
    ("longusername", "longusername1", False),
    ("u2wqblarhim5su7pxemcbwdyryrghmuk", "U2WQBLARHIM5SU7PXEMCBWDYRYRGHMUK", True),
])
def test_weak_passwords(username, password, weak):
    assert is_weak_password(username, password) is weak
