"""Shared pieces of the property suites: one WSGI app per module, clients, strategies, checks.

The app is :func:`syncserver.app.make_app` on a SQLite file in a temporary
folder, wrapped in WebTest's ``TestApp``; it is built once per test module
(hypothesis runs hundreds of examples against it) with one registered user.
"""

import base64
import hashlib
import json
import re
import string
import urllib.parse
import uuid
from decimal import Decimal

import pytest
import webtest
from hypothesis import strategies as st

from syncserver.app import make_app

TIMESTAMP_RE = re.compile(r"-?\d+\.\d{2}")
WEAVE_CODES = set(range(1, 18))
PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
ID_ALPHABET = PRINTABLE_ASCII.replace("/", "")


def sync_username(email):
    return base64.b32encode(hashlib.sha1(email.lower().encode()).digest()).decode().lower()


def basic_auth(username, password):
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def quote_segment(text):
    """Percent-encode one path segment completely (``/`` included)."""
    return urllib.parse.quote(text, safe="")


class SyncApp:
    """A TestApp around the real application, plus the accounts made for the tests."""

    def __init__(self, directory):
        self.database = directory / "properties.db"
        url = f"sqlite:///{self.database}"
        self.wsgi = make_app(None, **{
            "storage.sqluri": url, "auth.sqluri": url,
            "storage.create_tables": "true", "auth.create_tables": "true"})
        self.app = webtest.TestApp(self.wsgi, lint=False)
        self.accounts = {}

    def register(self, label):
        email = f"{label}-{uuid.uuid4().hex[:10]}@example.com"
        username = sync_username(email)
        password = "pw-" + uuid.uuid4().hex
        response = self.request("PUT", f"/user/1.0/{username}",
                                body=json.dumps({"password": password, "email": email}).encode())
        assert response.status_int == 200, response
        assert response.body.decode() == username
        self.accounts[label] = {"email": email, "username": username, "password": password,
                                "auth": basic_auth(username, password)}
        return self.accounts[label]

    def request(self, method, path, body=None, headers=None):
        """Any request; the response whatever its status. Raw ``path`` (already encoded)."""
        kwargs = {"method": method, "headers": dict(headers or {}), "expect_errors": True}
        if body is not None:
            kwargs["body"] = body
        return self.app.request(path, **kwargs)

    def storage(self, account, method, path, body=None, headers=None):
        """A request under ``/1.1/<username>/`` with the account's Basic auth."""
        all_headers = {"Authorization": account["auth"]}
        all_headers.update(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
        return self.request(method, f"/1.1/{account['username']}/{path}", body, all_headers)

    def snapshot(self, account):
        """The user's whole visible storage: info/collections and every collection in full."""
        response = self.storage(account, "GET", "info/collections")
        assert response.status_int == 200, response
        info = json.loads(response.body, parse_float=Decimal)
        collections = {}
        for name in sorted(info):
            response = self.storage(account, "GET", f"storage/{quote_segment(name)}?full=1")
            assert response.status_int == 200, response
            records = json.loads(response.body, parse_float=Decimal)
            collections[name] = sorted(records, key=lambda record: record["id"])
        return {"info": info, "collections": collections}

    def close(self):
        self.wsgi.close()


@pytest.fixture(scope="module")
def sync_app(tmp_path_factory):
    app = SyncApp(tmp_path_factory.mktemp("properties"))
    yield app
    app.close()


# --- checks every response must pass ----------------------------------------------------


def check_response(response, allow_503=False):
    """Never a 5xx; X-Weave-Timestamp always; JSON 400s carry a Weave code; JSON parses."""
    status = response.status_int
    environ = response.request.environ
    target = environ.get("PATH_INFO", "") + ("?" + environ["QUERY_STRING"]
                                              if environ.get("QUERY_STRING") else "")
    description = f"{environ.get('REQUEST_METHOD')} {target!r} -> {status} {response.body[:300]!r}"
    if allow_503 and status == 503:
        assert response.headers.get("Retry-After"), description
    else:
        assert status < 500, description
    value = response.headers.get("X-Weave-Timestamp")
    assert value is not None, "no X-Weave-Timestamp: " + description
    assert TIMESTAMP_RE.fullmatch(value), f"malformed X-Weave-Timestamp {value!r}: {description}"
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
    if content_type == "application/json" and response.body:
        try:
            decoded = json.loads(response.body, parse_constant=_no_constants)
        except ValueError as error:
            raise AssertionError(f"invalid JSON body ({error}): {description}") from None
        if status == 400:
            assert isinstance(decoded, int) and not isinstance(decoded, bool) \
                and decoded in WEAVE_CODES, f"400 with a JSON body that is no Weave code: {description}"
    return status


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


# --- strategies --------------------------------------------------------------------------

#: Numbers, and the strings that look like numbers to int()/float()/Decimal().
number_like_strings = st.sampled_from([
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", "1e309", "-1e309", "1e-400",
    "99999999999999999999999999999", "-99999999999999999999", "-0", "0x1f", " 12 ", "1_000",
    "\uff11\uff12", "\u0663", "3.5", "-5.5", "1e3", "1E+2", "", " ", "0", "-1", "999999999",
    "1000000000", "-999999999", "-1000000000", "31536000", "31536001", "1.0", ".5", "5.",
    "+7", "\u00bd", "1e9999999999",
])

json_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-10**40, max_value=10**40),
    st.sampled_from([0, -1, 999999999, 1000000000, -999999999, -1000000000, 31536000, 31536001,
                     2**63, -2**63, 2**64, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, -5.5, 3.5, 1e308, -1e308, 5e-324, 1e16, 999999999.9]),
)

unicode_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(["", "\u0000", "caf\u00e9", "\u2603", "\U0001f600", "\U0001d11e",
                     "a/b", "..", "{guid}", "\\", "\u202e", "\ufeff", "\uffff"]),
)

json_scalars = st.one_of(st.none(), st.booleans(), json_numbers, unicode_text, number_like_strings)

json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(unicode_text, children, max_size=4)),
    max_leaves=10,
)

WBO_KEYS = ["id", "payload", "sortindex", "parentid", "predecessorid", "ttl", "modified",
            "username", "collection", "payload_size"]

#: Raw JSON texts that json.dumps cannot make: lone surrogates, huge and odd numbers.
raw_json_literals = st.sampled_from([
    '"\\ud800"', '"\\udfff\\ud800"', '"\\ud83d\\ude00"', '"a\\ud800b"', '"\\u0000"',
    "1e400", "-1e400", "1" + "0" * 5000, "-0", "1E2", "0.0000000000000000000001",
    "123456789012345678901234567890", "NaN", "Infinity", "-Infinity", "true", "null", "[]", "{}",
    '"' + "x" * 70 + '"', '"' + "\u00e9" * 40 + '"',
])


@st.composite
def random_wbo_text(draw):
    """JSON text of an object with WBO-ish keys (and others) and any kind of value."""
    keys = draw(st.lists(st.one_of(st.sampled_from(WBO_KEYS), unicode_text), max_size=7,
                         unique=True))
    parts = []
    for key in keys:
        if draw(st.integers(0, 4)) == 0:
            value = draw(raw_json_literals)
        else:
            value = json.dumps(draw(json_values))
        if key == "ttl" and _expires_within_the_test(value):
            value = "0"
        parts.append(json.dumps(key) + ": " + value)
    return "{" + ", ".join(parts) + "}"


def _expires_within_the_test(text):
    """A TTL that could lapse between two snapshots (and so look like a change)."""
    try:
        value = json.loads(text)
        number = float(value) if not isinstance(value, bool) else 0.0
    except (TypeError, ValueError, OverflowError):
        return False
    return 0 < number < 3600


valid_ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64)
reference_ids = st.text(alphabet=PRINTABLE_ASCII, min_size=0, max_size=64)
# Any text a JSON body can carry except NUL, which no database-neutral server can store.
valid_payloads = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=200),
    st.text(alphabet=string.ascii_letters + string.digits + "+/=", max_size=400),
    st.builds(lambda d: json.dumps(d), st.dictionaries(st.text(max_size=8), st.text(max_size=20),
                                                        max_size=3)),
)
valid_sortindexes = st.integers(min_value=-999_999_999, max_value=999_999_999)
